import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dependsNames, inputsHash, type LabInputs } from '../../../src/lab/build.js';

test('dependsNames: first alternative, no version constraints or :any', () => {
  assert.deepEqual(dependsNames('linux-image-6.1.0-56-cloud-amd64 (= 6.1.192-2)'), ['linux-image-6.1.0-56-cloud-amd64']);
  assert.deepEqual(dependsNames('libc6 (>= 2.34), libglib2.0-0 (>= 2.63.3), python3:any, a | b'), ['libc6', 'libglib2.0-0', 'python3', 'a']);
  assert.deepEqual(dependsNames(''), []);
});

test('inputsHash changes with any input: a package version or a file', () => {
  const base: LabInputs = {
    kernelPackage: 'linux-image-x',
    kernelVersion: '1',
    busyboxVersion: '1',
    gccVersion: '12',
    libcDevVersion: '2',
    guestAgentVersion: '7',
    guestAgentLibs: { libc6: '2' },
    files: { 'lab/workload.c': 'aa', 'lab/init.sh': 'bb' },
  };
  const h = inputsHash(base);
  assert.equal(inputsHash(structuredClone(base)), h, 'same inputs, same hash');
  assert.notEqual(inputsHash({ ...base, kernelVersion: '2' }), h);
  assert.notEqual(inputsHash({ ...base, files: { ...base.files, 'lab/init.sh': 'bc' } }), h);
  assert.notEqual(inputsHash({ ...base, guestAgentLibs: { libc6: '3' } }), h);
  assert.notEqual(inputsHash({ ...base, guestAgentVersion: null }), h);
});
