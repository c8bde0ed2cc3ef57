import { WaitingList } from '../lib/datasource/waiting-list.js';

// The datasource's acquisitions waiting for a client: removed as each gets one, all taken at shutdown.
describe('WaitingList', () => {
  it('takes what is still listed, in the order added, once', () => {
    const list = new WaitingList<string>();
    const first = list.add('a');
    const middle = list.add('b');
    const last = list.add('c');
    expect(list.delete(middle)).toBe(true);
    expect(list.delete(middle)).toBe(false);
    const later = list.add('d');
    expect(list.delete(first)).toBe(true);
    expect(list.takeAll()).toEqual(['c', 'd']);
    // Taken at shutdown: an acquisition served after that finds its entry gone (and hands its client back).
    expect(list.delete(last)).toBe(false);
    expect(list.delete(later)).toBe(false);
    expect(list.takeAll()).toEqual([]);
  });

  it('stays usable after its only entry is removed from either end', () => {
    const list = new WaitingList<number>();
    expect(list.delete(list.add(1))).toBe(true);
    const two = list.add(2);
    const three = list.add(3);
    expect(list.delete(three)).toBe(true);
    expect(list.delete(two)).toBe(true);
    list.add(4);
    expect(list.takeAll()).toEqual([4]);
  });
});
