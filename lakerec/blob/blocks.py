"""How a large file is cut into blocks, and which of them an earlier, interrupted upload staged.

A block upload stages blocks (Put Block) and makes them the blob in one commit (Put Block
List). Azure keeps staged, uncommitted blocks for a week, so a re-run can list them
(`get_block_list("uncommitted")`) and send only the rest. For that a block's id must name
its bytes, the same way in every run:

    lr1-<MD5 of the whole file, hex>-<offset, 12 hex digits>-<length, 8 hex digits>

The whole file's MD5 is in every id, so a changed local file (even one of the same size
and mtime) never reuses a block staged from its old bytes: its blocks all have new ids.
Offset and length pin the block's place, so a block staged with another block size is
reused only where it holds exactly the same bytes. A staged block is reused when its id
matches and its size is the one the id says. The MD5 is the one a run computes anyway (the
blob's Content-MD5), so resuming costs one local read of the file, not a byte of upload.

Everything here is pure: the staged blocks come in as values, so it is tested without Azure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from lakerec.blob.plan import human_bytes
from lakerec.errors import LakeRecError

MiB = 1024 * 1024
MAX_BLOCKS = 50_000  # Azure's limit of committed blocks per blob
_ID_VERSION = "lr1"  # a new id format gets a new prefix: blocks of the old one are then not reused


@dataclass(frozen=True)
class Block:
    """One block of a file: its id and where its bytes are."""

    id: str
    offset: int
    length: int


@dataclass(frozen=True)
class BlockPlan:
    """The blocks a run commits, in order, and those it still has to stage."""

    blocks: tuple[Block, ...]
    to_send: tuple[Block, ...]
    # Uncommitted blocks whose ids have another length (another tool's) make Azure refuse
    # ours (all ids of a blob must have one length): they have to be discarded first.
    discard_staged: bool = False

    @property
    def bytes_staged(self) -> int:
        """Bytes an earlier run already staged, which this one does not send."""
        return sum(b.length for b in self.blocks) - self.bytes_to_send

    @property
    def bytes_to_send(self) -> int:
        return sum(b.length for b in self.to_send)


def block_id(md5: bytes, offset: int, length: int) -> str:
    """The id of the block at `offset` of `length` bytes of the file whose MD5 is `md5` (58 characters)."""
    return f"{_ID_VERSION}-{md5.hex()}-{offset:012x}-{length:08x}"


def block_layout(size: int, block_size: int, md5: bytes) -> tuple[Block, ...]:
    """The blocks of a file of `size` bytes in blocks of `block_size`, the last one shorter.

    Args:
        size: the file's size in bytes.
        block_size: bytes per block.
        md5: the whole file's MD5 digest, part of every block id.

    Returns:
        The blocks in file order.

    Raises:
        LakeRecError: the file needs more blocks than Azure allows in one blob.
    """
    count = -(-size // block_size)
    if count > MAX_BLOCKS:
        need = -(-size // (MAX_BLOCKS * MiB))
        raise LakeRecError(
            f"{human_bytes(size)} in blocks of {human_bytes(block_size)} needs {count} blocks, over Azure's limit "
            f"of {MAX_BLOCKS} per blob: pass --block-size-mb {need} or more"
        )
    return tuple(Block(block_id(md5, off, min(block_size, size - off)), off, min(block_size, size - off))
                 for off in range(0, size, block_size))


def plan_blocks(blocks: tuple[Block, ...], staged: Mapping[str, int]) -> BlockPlan:
    """Which blocks still have to be staged, given those an earlier run left uncommitted.

    Args:
        blocks: the file's blocks (see `block_layout`).
        staged: the blob's uncommitted blocks, size by id.

    Returns:
        The plan: every block whose id is not staged with its length is sent; if a staged id
        has another length than ours, all staged blocks are discarded and every block is sent.
    """
    if blocks and any(len(i) != len(blocks[0].id) for i in staged):
        return BlockPlan(blocks, blocks, discard_staged=True)
    return BlockPlan(blocks, tuple(b for b in blocks if staged.get(b.id) != b.length))
