import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatReport, type LoginReport } from '../../src/report.js';

const empty: LoginReport = { logins: 0, rejected: 0, perDay: [], perDeviceType: [], perAppVersion: [], repeatedIps: [], repeatedDeviceIds: [] };

test('the header line counts in the singular for one and the plural otherwise', () => {
  const header = (logins: number, rejected: number | null) => formatReport({ ...empty, logins, rejected }).split('\n')[0];

  assert.equal(header(1, 1), 'user_logins: 1 login; login_etl.rejected_messages: 1 rejected message');
  assert.equal(header(2, 0), 'user_logins: 2 logins; login_etl.rejected_messages: 0 rejected messages');
  assert.equal(header(1, null), 'user_logins: 1 login');
});
