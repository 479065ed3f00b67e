// `ballast doctor` prints what libvirtd and QEMU said (guest names in its findings): a guest
// named with terminal escapes must not reach the terminal as escapes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatDoctor } from '../../src/doctor/format.js';

test("ballast doctor's table escapes control characters in findings and fixes", () => {
  const table = formatDoctor([{ id: 'guest.balloon', status: 'warn', message: 'guest esc\x1b]0;PWNED\x07 has no balloon', fix: 'add one to \x9b2J\u202evm' }]);
  assert.match(table, /guest esc\\x1b\]0;PWNED\\x07 has no balloon/);
  assert.match(table, /fix: add one to \\x9b2J\\u202evm/);
  // biome-ignore lint/suspicious/noControlCharactersInRegex: these are the characters meant
  assert.doesNotMatch(table, /[\x00-\x09\x0b-\x1f\x7f-\x9f\u202e]/);
});
