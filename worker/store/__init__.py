"""The SQL of stsync, one module per kind of record. Every function takes the session it works in; the caller
owns the transaction, so where a commit happens stays visible in the code that calls these."""
