"""Private helpers shared by the public subpackages."""
