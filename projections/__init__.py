"""The read side: read models that follow the store, and what a person looks at."""
