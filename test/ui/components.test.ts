import {describe, expect, it} from 'vitest';
import {fit, layoutHints, positionLabel, scrollWindow} from '../../source/ui/components.js';
import {hostColumns} from '../../source/ui/screens/home.js';
import {generatedFleet} from './fakes.js';

describe('scrollWindow', () => {
  it('moves only when the cursor leaves the window, by as little as it must', () => {
    expect(scrollWindow(0, 40, 10, 0)).toBe(0);
    expect(scrollWindow(0, 40, 10, 9)).toBe(0);
    expect(scrollWindow(0, 40, 10, 10)).toBe(1); // one row past the bottom: one row down
    expect(scrollWindow(20, 40, 10, 25)).toBe(20); // inside: stays
    expect(scrollWindow(20, 40, 10, 19)).toBe(19); // one row above: one row up
    expect(scrollWindow(0, 40, 10, 39)).toBe(30); // the last row shows at the bottom
  });

  it('never runs past either end, and a list that fits starts at 0', () => {
    expect(scrollWindow(35, 40, 10, 39)).toBe(30);
    expect(scrollWindow(-4, 40, 10, 0)).toBe(0);
    expect(scrollWindow(5, 6, 10, 5)).toBe(0);
  });

  it('keeps a block in view with its cursor; the cursor wins when the block is taller than the window', () => {
    expect(scrollWindow(0, 40, 10, 12, 15, 13)).toBe(6);
    expect(scrollWindow(0, 40, 10, 12, 30, 25)).toBe(16);
    expect(scrollWindow(30, 40, 10, 12, 30, 12)).toBe(12);
  });
});

describe('positionLabel', () => {
  it('says which rows show and whether there is more above or below', () => {
    expect(positionLabel(11, 20, 40)).toBe('▲ 12–31 of 40 ▼');
    expect(positionLabel(0, 20, 40)).toBe('  1–20 of 40 ▼');
    expect(positionLabel(20, 20, 40)).toBe('▲ 21–40 of 40');
  });
});

describe('layoutHints', () => {
  const hints = [
    {key: '↑↓', label: 'select'},
    {key: 'a', label: 'add'},
    {key: 'l', label: 'lock down the fleet'},
    {key: 'q', label: 'quit'},
  ];
  it('puts hints on as few lines as the width allows, never splitting one', () => {
    expect(layoutHints(hints, 200)).toHaveLength(1);
    const lines = layoutHints(hints, 30);
    expect(lines.map((line) => line.map((hint) => hint.key))).toEqual([['↑↓', 'a'], ['l', 'q']]);
    for (const line of lines) expect(line.map((hint) => `${hint.key} ${hint.label}`).join('  ').length).toBeLessThanOrEqual(30);
  });
});

describe('fit', () => {
  it('cuts with … to the width, pads when asked, never exceeds it', () => {
    expect(fit('lb,bastion', 6)).toBe('lb,ba…');
    expect(fit('lb', 6, true)).toBe('lb    ');
    expect(fit('exactly', 7)).toBe('exactly');
    expect(fit('x', 0)).toBe('');
  });
});

describe('hostColumns', () => {
  it('fits name, ssh and roles in the width with room for the state, and drops ssh when narrow', () => {
    const hosts = generatedFleet(40).hosts;
    for (const columns of [40, 80, 120, 200]) {
      const widths = hostColumns(hosts, columns);
      const used = 2 + widths.name + 1 + (widths.ssh > 0 ? widths.ssh + 1 : 0) + widths.roles + 1;
      expect(used, `at ${columns} columns`).toBeLessThanOrEqual(columns - 8);
      expect(widths.name).toBeGreaterThanOrEqual('host-000'.length);
    }
    expect(hostColumns(hosts, 40).ssh).toBe(0);
    expect(hostColumns(hosts, 120).ssh).toBeGreaterThan(0);
  });
});
