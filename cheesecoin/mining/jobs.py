"""Mining jobs: a candidate cheese with its smell preimage up to the nonce
(``Job``), the WORK message of docs/protocol.md section 6 it makes, the job
ids of WORK and SUBMIT, and where a nonce search begins."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Union

from cheesecoin.core.cheese import info_hash, preimage_prefix, sha1_hex
from cheesecoin.core.errors import BadMessage
from cheesecoin.core.formats import MAX_INT

JobId = Union[int, str]  # the ``job`` field of WORK and SUBMIT

# Searches start at a random nonce below this, so that the built-in miner and
# external miners mining the same template do not repeat each other's work.
_START_SPREAD = 2**63


@dataclass(frozen=True)
class Job:
    """A candidate cheese to mine and the smell preimage up to its nonce."""

    job_id: JobId
    cheese: dict  # the candidate, without nonce and smell
    prefix: str
    bits: int

    @property
    def parent_smell(self) -> str:
        return self.cheese["parent_smell"]

    @property
    def height(self) -> int:
        return self.cheese["sequence_number"]

    def complete(self, nonce: int) -> dict:
        """The candidate with ``nonce`` and its smell (which may miss the target)."""
        return dict(
            self.cheese, nonce=nonce, smell=sha1_hex((self.prefix + str(nonce)).encode("ascii"))
        )

    def work_message(self) -> dict:
        """The WORK message of docs/protocol.md section 6."""
        return {
            "type": "WORK",
            "job": self.job_id,
            "prefix": self.prefix,
            "bits": self.bits,
            "cheese": self.cheese,
        }


def get_job_id(msg: dict) -> JobId:
    """The ``job`` field of WORK or SUBMIT: a string or an integer, else BadMessage."""
    job_id = msg.get("job")
    if isinstance(job_id, bool) or not isinstance(job_id, (int, str)):
        raise BadMessage("field 'job' must be a string or an integer")
    if isinstance(job_id, int) and not 0 <= job_id <= MAX_INT:  # section 1's integer range
        raise BadMessage("field 'job' must be an integer from 0 to 2^63 - 1")
    if isinstance(job_id, str) and len(job_id) > 64:
        raise BadMessage("field 'job' must be at most 64 characters")
    return job_id


def job_for(job_id: JobId, cheese: dict) -> Job:
    """A Job for a candidate cheese."""
    prefix = preimage_prefix(
        cheese["parent_smell"],
        cheese["sequence_number"],
        cheese["timestamp"],
        cheese["bits"],
        info_hash(cheese["unit_of_information"]),
    )
    return Job(job_id, cheese, prefix, cheese["bits"])


def random_start() -> int:
    """Where a search begins in the nonce space (random, leaving 2^63 nonces after it)."""
    return random.randrange(_START_SPREAD)
