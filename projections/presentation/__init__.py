"""What a person looks at: terminal tables, figures and the HTML report."""
