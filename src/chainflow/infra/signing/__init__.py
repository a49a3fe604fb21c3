"""Keys and bytes: envelope encryption of private keys and the signers that use them."""
