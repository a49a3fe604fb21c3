"""Where a wallet's key lives: the one wallet word the CLI's options name before any table
is loaded (`chainflow wallet import --signer`)."""

from enum import StrEnum


class SignerKind(StrEnum):
    LOCAL = "local"  # a key sealed in this database
    PKCS11 = "pkcs11"  # a key in an HSM token; key_ref is its CKA_LABEL
    AWS_KMS = "aws_kms"  # an AWS KMS key; key_ref is its id or alias
