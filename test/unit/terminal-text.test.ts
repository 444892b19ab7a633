import {describe, expect, it} from 'vitest';
import {stripControl, stripControlDeep, stripControlLines} from '../../source/core/terminal-text.js';
import {parseDropLog} from '../../source/ui/real-services.js';

describe('stripControl', () => {
  it('removes whole escape sequences: colours, cursor moves, clear screen, titles, hyperlinks', () => {
    expect(stripControl('Debian \u001b[31mGNU\u001b[0m/Linux')).toBe('Debian GNU/Linux');
    expect(stripControl('ok\u001b[2J\u001b[1;1Hhidden')).toBe('okhidden');
    expect(stripControl('\u001b]0;pwned title\u0007eth0')).toBe('eth0');
    expect(stripControl('\u001b]8;;https://evil.example\u001b\\click\u001b]8;;\u001b\\')).toBe('click');
    expect(stripControl('a\u001bPq#0;2;0;0;0\u001b\\b')).toBe('ab');
    expect(stripControl('a\u001bcb\u001b7c')).toBe('abc');
    expect(stripControl('x\u009b31my\u009d0;t\u009cz')).toBe('xyz');
    expect(stripControl('unterminated \u001b]0;title')).toBe('unterminated ');
    expect(stripControl('trailing \u001b')).toBe('trailing ');
  });

  it('removes C0, DEL, C1 and bidi controls; tabs and line breaks become spaces', () => {
    expect(stripControl('nginx\u0000\u0007\u0008\u007f\u0085')).toBe('nginx');
    expect(stripControl('owner\nroot shell line\r\tx')).toBe('owner root shell line x');
    expect(stripControl('file\u202etxt.exe')).toBe('filetxt.exe');
  });

  it('leaves ordinary text alone, Unicode included', () => {
    const text = 'Ubuntu 24.04 LTS — “noble” [beta] 100% ~/x';
    expect(stripControl(text)).toBe(text);
  });

  it('walks objects and arrays, keeping the keys asked for', () => {
    const value = {os: {prettyName: 'A\u001b[2JB'}, list: ['x\u0007', 3, true, null], raw: 'keep\u001b[1m\n'};
    expect(stripControlDeep(value, new Set(['raw']))).toEqual({os: {prettyName: 'AB'}, list: ['x', 3, true, null], raw: 'keep\u001b[1m\n'});
  });

  it('keeps the lines of a listing, each cleaned; the drop log shown by troubleshoot likewise', () => {
    expect(stripControlLines('Chain INPUT\n1 ACCEPT /* \u001b[2Jx */\n')).toBe('Chain INPUT\n1 ACCEPT /* x */\n');
    const view = parseDropLog('@logging on\n@source dmesg\nisolate-wizard DROP IN=eth0 \u001b]0;t\u0007SRC=198.51.100.7\n');
    expect(view.lines).toEqual(['isolate-wizard DROP IN=eth0 SRC=198.51.100.7']);
  });
});
