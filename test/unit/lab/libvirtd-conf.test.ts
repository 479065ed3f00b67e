import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mergeConfSettings, LAB_QEMU_CONF } from '../../../src/lab/libvirtd.js';

test('mergeConfSettings appends missing keys and leaves comments alone', () => {
  const src = '# user = "qemu"\n#stdio_handler = "logd"\nvnc_listen = "0.0.0.0"\n';
  const r = mergeConfSettings(src, LAB_QEMU_CONF);
  assert.equal(r.changed, true);
  const lines = r.text.split('\n');
  assert.ok(lines.includes('# user = "qemu"'));
  assert.ok(lines.includes('vnc_listen = "0.0.0.0"'));
  assert.ok(lines.includes('user = "root"'));
  assert.ok(lines.includes('stdio_handler = "file"'));
});

test('mergeConfSettings replaces an active line in place and is idempotent', () => {
  const src = 'user = "libvirt-qemu"\nother = 1\n';
  const r = mergeConfSettings(src, { user: '"root"' });
  assert.equal(r.text, 'user = "root"\nother = 1\n');
  const again = mergeConfSettings(r.text, { user: '"root"' });
  assert.equal(again.changed, false);
  assert.equal(again.text, r.text);
});

test('mergeConfSettings on an empty file', () => {
  const r = mergeConfSettings('', { a: '1', b: '"x"' });
  assert.equal(r.text, 'a = 1\nb = "x"\n');
});
