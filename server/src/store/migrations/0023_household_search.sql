-- 0023_household_search: the console's household search (农户检索, docs/console.md "Search").
-- One FTS5 document per household, rewritten by the store in the same transaction as every
-- card write (store/sqlite/search.rs); after this file runs the store indexes the households
-- already stored. Columns hold whitespace-separated tokens: every suffix of the head's name
-- (head), of the other current members' names (members) and of the 户编号 (number), so a
-- prefix query finds any part of them; the names' 拼音 initials (initials); and the last four
-- characters of each current member's ID number (id_tails), exactly what the masked form
-- 110105********1234 shows. No whole ID number is ever indexed: those are found through the
-- keyed blind index of migration 0018 (member_id_index).
--
-- The FTS rowid is search_id below: an INTEGER PRIMARY KEY keeps its value through VACUUM,
-- so a household's document is always found again by key, never by a scan.
CREATE TABLE household_search_keys (
    search_id     INTEGER PRIMARY KEY,
    household_id  TEXT NOT NULL UNIQUE REFERENCES households (household_id)
);
CREATE VIRTUAL TABLE household_search USING fts5 (
    head, members, initials, number, id_tails,
    tokenize = 'unicode61'
);
