// The absolute-form request-target parser shared by the exchange path and Upgrade.
import { describe, expect, it } from 'vitest';
import { parseAbsoluteForm } from './request-target.js';

describe('parseAbsoluteForm', () => {
  it('leaves origin-form, asterisk-form and authority-form alone', () => {
    for (const target of ['/', '/chat?x=1', '*', 'example.com:443', '', 'x:/y', '://host/p']) expect(parseAbsoluteForm(target), target).toBeNull();
  });

  it('splits scheme (lowercased), authority and path; no path is /', () => {
    expect(parseAbsoluteForm('http://ws/chat?x=1')).toEqual({ scheme: 'http', authority: 'ws', path: '/chat?x=1' });
    expect(parseAbsoluteForm('HTTPS://ws:8080')).toEqual({ scheme: 'https', authority: 'ws:8080', path: '/' });
    expect(parseAbsoluteForm('http://user@h:1/a/b')).toEqual({ scheme: 'http', authority: 'user@h:1', path: '/a/b' });
    expect(parseAbsoluteForm('http:///x')).toEqual({ scheme: 'http', authority: '', path: '/x' });
  });
});
