"""The admin cluster's repositories (MongoDB only here)."""
