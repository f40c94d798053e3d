/** `login-etl generate`: sample login events as JSON Lines. */
import { lines, wholeNumber, type Command } from '../cli/command.js';

export const generate: Command = {
  summary: 'Print sample login events as JSON Lines, in the shape the pipeline expects.',
  settings: [],
  extra: {
    count: { type: 'string', default: '100', description: 'Events to print.' },
    seed: { type: 'string', default: '1', description: 'Seed of the sample data.' },
  },
  async action({ flags, io }) {
    const { out } = lines(io);
    const { generateSampleEvents } = await import('../embedded/sample-data.js');
    const events = generateSampleEvents({
      count: wholeNumber('count', flags.count, 1, 100_000_000),
      seed: wholeNumber('seed', flags.seed, 0, 2 ** 32 - 1),
    });
    for (const event of events) out(event.body);
    return 0;
  },
};
