-- A document's public address (from its front matter, or the page it was read from), shown to
-- visitors beside its title. Null for documents with no page of their own.
ALTER TABLE copines.documents ADD COLUMN url text;
