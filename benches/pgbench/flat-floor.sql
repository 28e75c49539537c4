-- Flatness, floor: one client decrements one counter.
UPDATE floor_counter SET remaining = remaining - 1 WHERE id = 'flat';
