"""The blockchain's stores: the MongoDB collections of one validator (``chain``). MongoDB
is reached only from here."""
