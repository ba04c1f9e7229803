"""Knowledge that follows the agency's own content: its site, Google Drive and Notion."""
