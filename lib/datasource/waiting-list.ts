/** Where an item sits in a WaitingList, to remove it by. */
export interface WaitingEntry<T> {
  readonly item: T;
  previous: WaitingEntry<T> | undefined;
  next: WaitingEntry<T> | undefined;
  listed: boolean;
}

/**
 * The acquisitions of a datasource waiting for a client: one added and
 * removed per request, all taken at shutdown. A doubly linked list rather
 * than a Set: a Set churned at that rate kept the in-flight requests'
 * objects alive into the old generation (about 1 MB promoted per scavenge,
 * saturated, Node 24, `--trace-gc`, with the leases in a Set too); these
 * entries leave them to the young generation, like pg.Pool's own queue.
 */
export class WaitingList<T> {
  private head: WaitingEntry<T> | undefined = undefined;
  private tail: WaitingEntry<T> | undefined = undefined;

  add(item: T): WaitingEntry<T> {
    const entry: WaitingEntry<T> = { item, previous: this.tail, next: undefined, listed: true };
    if (this.tail) this.tail.next = entry;
    else this.head = entry;
    this.tail = entry;
    return entry;
  }

  /** Removes `entry`; false if it was no longer listed (removed before, or taken by takeAll()). */
  delete(entry: WaitingEntry<T>): boolean {
    if (!entry.listed) return false;
    entry.listed = false;
    if (entry.previous) entry.previous.next = entry.next;
    else this.head = entry.next;
    if (entry.next) entry.next.previous = entry.previous;
    else this.tail = entry.previous;
    entry.previous = entry.next = undefined;
    return true;
  }

  /** Empties the list and returns what it held, in the order added. */
  takeAll(): T[] {
    const items: T[] = [];
    for (let entry = this.head; entry; ) {
      const next = entry.next;
      items.push(entry.item);
      entry.listed = false;
      entry.previous = entry.next = undefined;
      entry = next;
    }
    this.head = this.tail = undefined;
    return items;
  }
}
