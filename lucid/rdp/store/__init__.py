"""Storage of the rdp cluster: MongoDB collections only, typed records in and out."""
