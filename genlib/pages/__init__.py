"""What the book's pages use: plots, widgets, glued prose, claims, exercises, the Colab bootstrap."""
