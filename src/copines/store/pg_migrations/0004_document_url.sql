-- The public address a document comes from (a web page, a Drive file, a Notion page).
ALTER TABLE copines.documents ADD COLUMN url text;
