# The Emotions in Action experiences arrive with their own issue.
