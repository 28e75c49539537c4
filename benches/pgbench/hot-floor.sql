-- Hot barrier, floor: every client decrements the one counter.
UPDATE floor_counter SET remaining = remaining - 1 WHERE id = 'hot';
