"""Errors of the chain registry, each with a stable code."""

from chainflow.core.errors import Conflict, InvalidInput, NotFound


class ChainNotFound(NotFound):
    code = "chain_not_found"


class UnknownChain(InvalidInput):
    """A request body names a chain the registry does not have."""

    code = "unknown_chain"


class ChainExists(Conflict):
    code = "chain_exists"


class ChainHasNoRpc(InvalidInput):
    code = "chain_has_no_rpc"


class RpcChainMismatch(InvalidInput):
    code = "rpc_chain_mismatch"


class RpcUnreachable(InvalidInput):
    code = "rpc_unreachable"


class RpcUrlForbidden(InvalidInput):
    """An RPC URL on a loopback, private, link-local, … host while those are not allowed."""

    code = "rpc_url_forbidden"
