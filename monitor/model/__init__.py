"""Pure typed values shared by every layer: no outside library lives here."""
