/**
 * The README's settings table is checked against the one in the code (src/config.ts): the same
 * settings, each with its flag, environment variables, default and range. The meaning column is
 * prose for people and is not compared.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { SETTINGS, settingDescription, settingRange, type SettingName, type SettingSpec } from '../../src/config.js';

/** Variables the keys are read from that have no flag (argv is visible to every local user). */
const ENV_ONLY = ['PII_KEY', 'PII_KEYS'];

interface Row {
  readonly flag: string | undefined;
  readonly env: string;
  readonly default: string;
  readonly meaning: string;
}

function readmeSettingsRows(readme: string): Row[] {
  const lines = readme.split('\n');
  const header = lines.findIndex((line) => line.startsWith('| flag | environment | default | meaning |'));
  assert.ok(header >= 0, 'the README has a settings table');
  const rows: Row[] = [];
  for (const line of lines.slice(header + 2)) {
    if (!line.startsWith('|')) break;
    // Cells are split on ' | ' so that escaped pipes inside backticks (hmac\|siv) stay whole.
    const cells = line.slice(2, -2).split(' | ');
    assert.equal(cells.length, 4, `four cells in: ${line}`);
    const [flag, env, fallback, meaning] = cells as [string, string, string, string];
    rows.push({ flag: /^`--([a-z-]+)`/.exec(flag)?.[1], env, default: fallback, meaning });
  }
  return rows;
}

const rows = readmeSettingsRows(readFileSync(new URL('../../../README.md', import.meta.url), 'utf8'));

test('every setting in the code has one row in the README with its flag, variables, default and range', () => {
  for (const name of Object.keys(SETTINGS) as SettingName[]) {
    const spec: SettingSpec = SETTINGS[name];
    const matching = rows.filter((row) => row.flag === spec.flag);
    assert.equal(matching.length, 1, `one README row for --${spec.flag}`);
    const row = matching[0] as Row;
    if (spec.env === undefined) assert.equal(row.env, '—', `--${spec.flag} has no environment variable`);
    else assert.ok(row.env.startsWith(`\`${spec.env}\``), `--${spec.flag}: the README names ${spec.env}, not ${row.env}`);
    if (spec.fallbackEnv !== undefined) assert.ok(row.env.includes(`\`${spec.fallbackEnv}\``), `--${spec.flag}: the README names ${spec.fallbackEnv} too`);
    if (spec.default !== undefined) {
      assert.ok(row.default.startsWith(`\`${spec.default}\``), `--${spec.flag}: default ${spec.default} in the code, ${row.default} in the README`);
    } else {
      assert.ok(!/^`[^`]*`$/.test(row.default), `--${spec.flag} has no default in the code, the README shows ${row.default}`);
    }
    const range = settingRange(name);
    if (range !== undefined) assert.ok(row.meaning.includes(`(${range})`), `--${spec.flag}: the README states the range (${range})`);
  }
});

test('every row of the README names a setting of the code, or a key variable that has no flag', () => {
  const flags = new Set(Object.values(SETTINGS).map((spec: SettingSpec) => spec.flag));
  for (const row of rows) {
    if (row.flag === undefined) {
      assert.ok(
        ENV_ONLY.some((name) => row.env === `\`${name}\``),
        `a row without a flag is one of ${ENV_ONLY.join(', ')}: ${row.env}`,
      );
    } else {
      assert.ok(flags.has(row.flag), `--${row.flag} in the README is a setting of the code`);
    }
  }
});

test('a whole-number setting states its range in its help text, from its schema', () => {
  assert.equal(settingDescription('receiveConcurrency'), 'Receive loops (long polls) running at once (1-64).');
  assert.equal(settingRange('waitTimeSeconds'), '1-20 seconds');
  assert.equal(settingRange('queueUrl'), undefined);
  assert.equal(settingDescription('queueUrl'), SETTINGS.queueUrl.description);
});
