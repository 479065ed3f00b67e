// The field types of ballast's config, shared by the core schema (src/config/schema.ts) and each control's
// own section (src/controls/*/config.ts): every error says what was expected.
import { z } from 'zod';

// zod 4 refuses NaN and Infinity in z.number(), so TOML's inf/nan are refused too.
export const positive = () => z.number({ error: 'expected a positive number' }).positive({ error: 'expected a positive number' });
export const nonNegative = () => z.number({ error: 'expected a number >= 0' }).min(0, { error: 'expected a number >= 0' });
export const positiveInt = () =>
  z.number({ error: 'expected a positive integer' }).int({ error: 'expected a positive integer' }).positive({ error: 'expected a positive integer' });
export const percent = () =>
  z
    .number({ error: 'expected a percentage (0 to 100)' })
    .min(0, { error: 'expected a percentage (0 to 100)' })
    .max(100, { error: 'expected a percentage (0 to 100)' });
// Below half a second a driver is asked for stats faster than guests report them (and a
// typo such as 1e-9 would poll libvirtd in a busy loop); above an hour the loop is not one.
export const interval = () =>
  z
    .number({ error: 'expected seconds from 0.5 to 3600' })
    .min(0.5, { error: 'expected seconds from 0.5 to 3600' })
    .max(3600, { error: 'expected seconds from 0.5 to 3600' });
export const str = () => z.string({ error: 'expected a string' });
export const bool = () => z.boolean({ error: 'expected true or false' });
export const oneOf = <T extends readonly [string, ...string[]]>(values: T) =>
  z.enum(values, { error: `expected one of ${values.map((v) => `"${v}"`).join(', ')}` });

/** A table whose missing keys take their defaults, and whose unknown keys are errors. */
export function section<S extends z.ZodRawShape>(shape: S) {
  // Generic S makes zod unable to see that {} is valid input; every key has a default.
  return z.strictObject(shape, { error: 'expected a table' }).prefault({} as never);
}
