-- The shared store's working columns (internal/store/shared).

-- arrival orders the messages as the store recorded them: ties of
-- received (store.Arrivals) and the POP3 listing of migrated mail.
ALTER TABLE messages ADD COLUMN arrival bigint GENERATED ALWAYS AS IDENTITY;
CREATE INDEX messages_arrival ON messages (mailbox_id, folder_id, arrival);

-- wire: the blob is the message as the protocols send it (CRLF line
-- ends, ending in CRLF, exactly size octets), as every delivery stores
-- it. false for a file migrated from a Maildir with other line ends: the
-- blob keeps its bytes (a migration back is byte-exact) and readers
-- normalize it; size is then the normalized size, blob_size the stored.
ALTER TABLE messages ADD COLUMN wire boolean NOT NULL DEFAULT true;
ALTER TABLE messages ADD COLUMN blob_size bigint NOT NULL DEFAULT 0 CHECK (blob_size >= 0);

-- fetch_data: the IMAP FETCH precomputation of the message
-- (backend.PrecomputeFetch), NULL when it was not made.
ALTER TABLE messages ADD COLUMN fetch_data bytea;

-- fts: the search words, folded (lower case, no accents) by the store
-- before to_tsvector('simple', ...), weighted A from, B to and cc,
-- C subject, D body text and attachment names.
ALTER TABLE messages ADD COLUMN fts tsvector NOT NULL DEFAULT ''::tsvector;
CREATE INDEX messages_fts ON messages USING gin (fts);
