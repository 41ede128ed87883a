"""The admin cluster's servicers: proto in, domain call, proto out."""
