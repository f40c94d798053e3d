/** The --help texts, generated from each command's declaration and the settings table. */
import { SETTINGS, settingDescription, type SettingSpec } from '../settings.js';
import type { Command } from './command.js';

/** The list of commands, or one command's options: only the options that command reads. */
export function help(commands: Readonly<Record<string, Command>>, name?: string): string {
  const command = name === undefined ? undefined : commands[name];
  if (name === undefined || command === undefined) {
    const lines = ['Usage: login-etl <command> [options]', '', 'Commands:'];
    for (const [commandName, each] of Object.entries(commands)) lines.push(`  ${commandName.padEnd(9)} ${each.summary}`);
    lines.push('', 'login-etl <command> --help lists the options of a command.');
    lines.push('Exit codes: 0 done, 1 failure at run time, 2 bad usage or configuration.');
    return lines.join('\n');
  }
  const rows: [string, string, string][] = command.settings.map((setting) => {
    const spec: SettingSpec = SETTINGS[setting];
    const flag = `--${spec.flag}${spec.type === 'string' ? ' <value>' : ''}`;
    const env = spec.env ? `env ${spec.env}` : '';
    // A negated flag's default is the setting's, not the flag's: its description says it.
    const { description, default: shown } = command.settingHelp?.[setting] ?? { description: settingDescription(setting), default: spec.negates === true ? undefined : spec.default };
    return [flag, env, `${description}${shown === undefined ? '' : ` Default: ${shown}.`}`];
  });
  for (const [flag, spec] of Object.entries(command.extra ?? {})) {
    rows.push([`--${flag}${spec.type === 'string' ? ' <value>' : ''}`, '', `${spec.description}${spec.default === undefined ? '' : ` Default: ${spec.default}.`}`]);
  }
  const flagWidth = Math.max(0, ...rows.map((r) => r[0].length));
  const envWidth = Math.max(0, ...rows.map((r) => r[1].length));
  const lines = [`Usage: login-etl ${name} ${command.usage ?? '[options]'}`, '', command.summary, ''];
  if (command.settings.includes('region')) {
    lines.push('AWS credentials come from the standard chain (AWS_ACCESS_KEY_ID, AWS_PROFILE, roles).', '');
  }
  if (command.settings.includes('piiKeysFile')) {
    lines.push('PII_KEY (env only) holds the masking key, PII_KEYS (env only) a key ring as JSON; or point PII_KEY_FILE or PII_KEYS_FILE at a file.', '');
  }
  lines.push('Options:');
  for (const [flag, env, description] of rows) lines.push(`  ${flag.padEnd(flagWidth)}  ${env.padEnd(envWidth)}  ${description}`);
  lines.push(`  ${'-h, --help'.padEnd(flagWidth)}  ${''.padEnd(envWidth)}  Show this help.`);
  return lines.join('\n');
}
