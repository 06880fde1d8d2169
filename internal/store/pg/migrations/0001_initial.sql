-- The shared store's first schema (docs/design.md, "Shared store (issue 18):
-- groundwork"). Unsigned 32-bit IMAP numbers are bigint with range checks.

-- A mailbox: one user's mail, named as in the Maildir store
-- (store.ValidMailboxName).
CREATE TABLE mailboxes (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name    text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9_-][a-z0-9._-]{0,63}$'),
    created timestamptz NOT NULL DEFAULT now()
);

-- A folder of a mailbox: INBOX (spelled "INBOX") and the user's folders,
-- named as IMAP shows them (UTF-8, '/' between levels). UIDNEXT and
-- HIGHESTMODSEQ are advanced in the transaction that adds or changes a
-- message (the row lock orders concurrent deliveries).
CREATE TABLE folders (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    mailbox_id    bigint NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
    name          text NOT NULL CHECK (name <> ''),
    special_use   text NOT NULL DEFAULT '',
    uidvalidity   bigint NOT NULL CHECK (uidvalidity BETWEEN 1 AND 4294967295),
    uidnext       bigint NOT NULL DEFAULT 1 CHECK (uidnext BETWEEN 1 AND 4294967296),
    highestmodseq bigint NOT NULL DEFAULT 1 CHECK (highestmodseq >= 1),
    -- The keywords the folder has defined (SELECT's FLAGS).
    keywords      text[] NOT NULL DEFAULT '{}',
    created       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (mailbox_id, name)
);

-- IMAP subscriptions (RFC 9051 §6.3.7): names, folders or not.
CREATE TABLE subscriptions (
    mailbox_id bigint NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
    name       text NOT NULL,
    PRIMARY KEY (mailbox_id, name)
);

-- A message body in the object store: one immutable object per SMTP
-- transaction (or APPEND), its key never derived from the content. The row
-- is inserted only after the PUT returned, in the transaction that inserts
-- the messages referring to it; an object without a row is an orphan the
-- sweeper removes after a grace period. A blob no message refers to any
-- more is garbage (found through messages_blob_key; no reference count to
-- keep in step).
CREATE TABLE blobs (
    key     text PRIMARY KEY,
    size    bigint NOT NULL CHECK (size >= 0),
    created timestamptz NOT NULL DEFAULT now()
);

-- A message of a folder. id is the store's message id: the POP3 UIDL (in
-- INBOX) and the web id, unique within the mailbox and kept by MOVE. The
-- summary fields are those of store.Summary, for the web list.
CREATE TABLE messages (
    mailbox_id  bigint NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
    id          text NOT NULL CHECK (id ~ '^[!-~]{1,70}$'),
    folder_id   bigint NOT NULL REFERENCES folders (id) ON DELETE CASCADE,
    uid         bigint NOT NULL CHECK (uid BETWEEN 1 AND 4294967295),
    modseq      bigint NOT NULL CHECK (modseq >= 1),
    flags       text[] NOT NULL DEFAULT '{}'
                CHECK (flags <@ ARRAY['\Seen', '\Answered', '\Flagged', '\Deleted', '\Draft']),
    keywords    text[] NOT NULL DEFAULT '{}',
    size        bigint NOT NULL CHECK (size >= 0),
    received    timestamptz NOT NULL,
    header_date timestamptz,
    from_addr   text NOT NULL DEFAULT '',
    to_addrs    text[] NOT NULL DEFAULT '{}',
    subject     text NOT NULL DEFAULT '',
    attachments boolean NOT NULL DEFAULT false,
    tags        text[] NOT NULL DEFAULT '{}',
    blob_key    text NOT NULL REFERENCES blobs (key),
    PRIMARY KEY (mailbox_id, id),
    UNIQUE (folder_id, uid)
);
CREATE INDEX messages_blob_key ON messages (blob_key);
CREATE INDEX messages_folder_modseq ON messages (folder_id, modseq);

-- The POP3 maildrop lock across nodes (RFC 1939 §8): a lease the holding
-- node renews; one whose expiry has passed (its node died) may be taken.
CREATE TABLE maildrop_leases (
    mailbox_id bigint PRIMARY KEY REFERENCES mailboxes (id) ON DELETE CASCADE,
    holder     text NOT NULL,
    acquired   timestamptz NOT NULL DEFAULT now(),
    expires    timestamptz NOT NULL
);
