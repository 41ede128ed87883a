"""Local stand-ins for networks that cannot run on one machine (TRON: ``lucid.devnet.tron``)."""
