"""The demo of `make demo`: stsync against the local emulators on SQLite. It lives outside the product packages so
that the product never imports the emulators."""
