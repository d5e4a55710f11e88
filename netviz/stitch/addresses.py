"""The address book: who owns each address, and where a socket using it can find its peer.

An address is owned by the machines (and namespaces) that list it in their snapshot. Its
locality says how far a peer may be: loopback stays in its namespace, link-local in its
machine (or between the one owners of the two addresses, on one link), an address several
machines own (docker0's 172.17.0.1) in each owner, and any other address may be anywhere in the
group. The zone of a socket, computed from its two addresses,
names that place; both ends of one connection compute the same zone, so the exact join can
key sockets by it.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable, Sequence
from typing import Optional

from netviz.snapshot import Snapshot

_MAPPED = "::ffff:"


def normalize_address(text: str) -> str:
    """Canonical form for joining: an IPv4-mapped IPv6 address is its IPv4 address.

    The one place where `::ffff:a.b.c.d` becomes `a.b.c.d`: a dual-stack listener's sockets
    appear in tcp6 with the mapped form, their peers in tcp with the plain one.
    """
    if text.startswith(_MAPPED) and "." in text:
        return text[len(_MAPPED):]
    return text


class Scope(enum.IntEnum):
    """What an address is by its number alone."""

    GLOBAL = 0
    LOOPBACK = 1
    LINK = 2


# Members as module constants: looking a member up on its Enum class is slow in a hot loop.
_ANYWHERE, _LOOPBACK, _LINK = Scope.GLOBAL, Scope.LOOPBACK, Scope.LINK

_scope_cache: dict[str, Scope] = {}


def scope(address: str) -> Scope:
    """Loopback, link-local or anything else (cached: a fleet has few distinct addresses)."""
    found = _scope_cache.get(address)
    if found is None:
        try:
            parsed = ipaddress.ip_address(address)
        except ValueError:
            found = _ANYWHERE
        else:
            found = _LOOPBACK if parsed.is_loopback else _LINK if parsed.is_link_local else _ANYWHERE
        if len(_scope_cache) < 1_000_000:
            _scope_cache[address] = found
    return found


def address_sort_key(address: str) -> tuple[int, int, str]:
    """Addresses in numeric order, IPv4 first; anything unparsable last."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return (9, 0, address)
    return (parsed.version, int(parsed), address)


class Locality(enum.IntEnum):
    """Where a socket using an address can find its peer (higher: nearer)."""

    GLOBAL = 0  # anywhere in the group (owned by one machine, or by none)
    SHARED = 1  # owned by several machines: the same machine, or anywhere (see AddressBook.shared_zone)
    MACHINE = 2  # link-local: the same machine, or its one owner on the link (see AddressBook.link_zone)
    NETNS = 3  # loopback: the same namespace of the same machine only


_GLOBAL, _SHARED, _MACHINE, _NETNS = Locality.GLOBAL, Locality.SHARED, Locality.MACHINE, Locality.NETNS

# A zone: None (anywhere in the group), a machine index, or (machine index, namespace inode).
Zone = object


class AddressBook:
    """Ownership of the group's addresses, and the scoping rules built on it."""

    def __init__(self, snapshots: Sequence[Snapshot]) -> None:
        self.machines: dict[str, set[int]] = {}  # address -> machines owning it
        self.namespaces: dict[tuple[int, str], set[int]] = {}  # (machine, address) -> namespaces there
        self.locality: dict[str, Locality] = {}  # filled as addresses are met, see locality_of
        # raw text -> a shared 1-tuple of its canonical form (see single)
        self.singles: dict[str, tuple[str]] = {}
        # machines whose snapshot may lack some of their addresses: legacy, or a namespace unread
        self.unlisted: set[int] = {index for index, snapshot in enumerate(snapshots)
                                   if snapshot.legacy or snapshot.coverage.namespaces_denied}
        for index, snapshot in enumerate(snapshots):
            for namespace in snapshot.namespaces:
                for address in namespace.addresses:
                    text = normalize_address(address.address)
                    self.machines.setdefault(text, set()).add(index)
                    self.namespaces.setdefault((index, text), set()).add(namespace.inode)

    def single(self, text: str) -> tuple[str]:
        """`(canonical text,)`, one shared tuple per distinct address, its locality known.

        A million sockets use a few thousand addresses: join keys built from the shared strings
        compare by identity and reuse their cached hashes.
        """
        found = self.singles.get(text)
        if found is None:
            canonical = normalize_address(text)
            found = self.singles.get(canonical)
            if found is None:
                found = self.singles[canonical] = (canonical,)
                self.locality_of(canonical)
            self.singles[text] = found
        return found

    def addresses(self, primary: Optional[str], every: Iterable[str]) -> tuple[str, ...]:
        """Every address of one side of a socket (SCTP lists several), canonical, primary first."""
        result = [] if primary is None else [normalize_address(primary)]
        for address in every:
            address = normalize_address(address)
            if address not in result:
                result.append(address)
        return tuple(result)

    def locality_of(self, address: str) -> Locality:
        locality = self.locality.get(address)
        if locality is None:
            found = scope(address)
            if found is _LOOPBACK:
                locality = _NETNS
            elif found is _LINK:
                locality = _MACHINE
            elif len(self.machines.get(address, ())) > 1:
                locality = _SHARED
            else:
                locality = _GLOBAL
            self.locality[address] = locality
        return locality

    def zone(self, machine: int, netns: int, local: str, remote: str) -> Zone:
        """Where the peer of a (local, remote) socket must live: None (anywhere), the machine,
        or (machine, namespace); the peer computes the same zone from the same two addresses."""
        locality = self.locality
        reach = locality.get(local)
        if reach is None:
            reach = self.locality_of(local)
        far = locality.get(remote)
        if far is None:
            far = self.locality_of(remote)
        if far > reach:
            reach = far
        if reach is _GLOBAL:
            return None
        if reach is _SHARED:
            return self.shared_zone(machine, local, remote)
        if reach is _MACHINE:
            return self.link_zone(machine, local, remote)
        return machine, netns

    def shared_zone(self, machine: int, local: str, remote: str) -> Optional[int]:
        """The zone of a pair of addresses, one at least owned by several machines, neither
        loopback nor link-local.

        Such an address (docker0's 172.17.0.1 on every Docker host) is each owner's own: the
        peer is on the same machine. But paired with an address that exactly one other machine
        owns, the connection comes from that machine: the zone is the whole group, where only an
        exact reversed four-tuple joins it (one machine claiming another's address must not turn
        that machine's flows into unresolved ones). Both ends compute the same zone.
        """
        shared, other = (local, remote) if self.locality[local] is _SHARED else (remote, local)
        if self.locality[other] is not _GLOBAL:
            return machine  # both shared
        other_owners = self.machines.get(other)
        if other_owners is None or len(other_owners) != 1 or not other_owners.isdisjoint(self.machines[shared]):
            return machine
        return None

    def link_zone(self, machine: int, local: str, remote: str) -> Optional[int]:
        """The zone of a pair of addresses, one at least link-local, neither loopback.

        A link-local address is its machine's own (a container's veth and its host's), but two
        addresses that each exactly one machine owns, two different machines, are machines on one
        link (BGP sessions between routers; a client whose kernel chose its global source
        address to reach a neighbour's link-local one): the zone is the whole group, where only
        an exact reversed four-tuple joins it. An address owned by several machines (the same
        fe80::1 on many gateways) or by none keeps the pair on its machine. Both ends compute
        the same zone.
        """
        owners = self.machines.get(local)
        far_owners = self.machines.get(remote)
        if owners is None or far_owners is None or len(owners) != 1 or len(far_owners) != 1 or owners == far_owners:
            return machine
        return None

    def translation_zone(self, machine: int, netns: int, source: str, destination: str) -> Optional[int]:
        """Where a conntrack entry of `machine` applies: a machine-local client or destination can
        only have been translated on its own machine; anything else, anywhere."""
        return machine if self.zone(machine, netns, source, destination) is not None else None

    def reachable(self, machine: int, netns: int, address: str, target_machine: int, target_netns: int) -> bool:
        """Can a socket in (machine, netns) reach `address` on a socket in (target_machine, target_netns)?"""
        locality = self.locality.get(address)
        if locality is None:
            locality = self.locality_of(address)
        if locality is _NETNS:
            return target_machine == machine and target_netns == netns
        owners = self.machines.get(address)
        if locality is _MACHINE:  # link-local: any namespace of the machine, or its one owner on the link
            if owners is None or machine in owners:
                return target_machine == machine
            return len(owners) == 1 and target_machine in owners
        if locality is _SHARED and machine in owners:  # docker0: the machine's own
            return target_machine == machine
        if owners is None:
            return True  # no machine claims it: the exact tuple is the only evidence
        # another machine's address, held by a socket of this very namespace: a transparent proxy
        # (IP_TRANSPARENT: an Envoy or HAProxy that connects to the local server from its client's
        # address), whose two sockets are each other's reversed tuple
        return target_machine in owners or (target_machine == machine and target_netns == netns)

    def locations(self, machine: int, netns: int, address: str) -> Optional[list[tuple[int, int]]]:
        """The namespaces where `address`, seen from (machine, netns), lives; None when ambiguous."""
        found = scope(address)
        if found is _LOOPBACK:
            return [(machine, netns)]
        if found is _LINK:
            return [(machine, ns) for ns in sorted(self.namespaces.get((machine, address), ()))]
        owners = self.machines.get(address)
        if not owners:
            return []
        if len(owners) > 1:
            if machine not in owners:
                return None  # claimed by several other machines: which one listens is not known
            owner = machine  # a shared address (docker0) is the machine's own
        else:
            (owner,) = owners
        return [(owner, ns) for ns in sorted(self.namespaces[(owner, address)])]

    def local_to(self, address: str, machine: int) -> bool:
        """Is a peer at `address` on `machine` itself: a loopback address, or a link-local one
        that `machine` owns or that no machine of the group owns?"""
        found = scope(address)
        if found is _LINK:
            owners = self.machines.get(address)
            return owners is None or machine in owners
        return found is _LOOPBACK

    def in_group(self, address: str, machine: Optional[int] = None) -> bool:
        """Should a peer at `address`, seen from `machine`, be in the group: a loopback address,
        one a machine owns, or a link-local address when some address of `machine` may be
        missing from its snapshot (a legacy one, or a namespace that could not be read, such as
        a container's end of a veth pair). A link-local address that no machine of the group
        owns is otherwise a neighbour on the link outside the group (a router, a switch)."""
        if address in self.machines:
            return True
        found = scope(address)
        if found is _LINK:
            return machine is None or machine in self.unlisted
        return found is _LOOPBACK


def address_claims(snapshots: Sequence[Snapshot], shown: int = 5) -> list[str]:
    """Warnings for the addresses several machines claim that connections between machines use.

    Such an address is each claimant's own inside that machine (docker0's 172.17.0.1 is on
    every Docker host and nobody else's business), but when a connection pairs it with another
    machine's address, either the address is shared on purpose or one machine claims another's.
    The stitch then joins such connections by their exact four-tuple only (see
    AddressBook.shared_zone); the warning names the address and every machine claiming it.
    """
    owners: dict[str, list[str]] = {}
    for snapshot in snapshots:
        mine = {normalize_address(address.address) for namespace in snapshot.namespaces
                for address in namespace.addresses}
        for address in mine:
            if scope(address) is _ANYWHERE:
                owners.setdefault(address, []).append(snapshot.name)
    shared = {address: names for address, names in owners.items() if len(names) > 1}
    if not shared:
        return []
    forms = set(shared) | {f"{_MAPPED}{address}" for address in shared if "." in address}
    # as sets: docker0's address is claimed by every Docker host, and a list of 10,000 names
    # searched for each socket using it made this scan quadratic in the fleet
    claimants = {address: frozenset(names) for address, names in shared.items()}
    contested: set[str] = set()
    for snapshot in snapshots:
        for namespace in snapshot.namespaces:
            for socket in namespace.sockets:
                if socket.local not in forms and socket.remote not in forms:
                    continue  # the common case, checked without normalising
                local, remote = normalize_address(socket.local or ""), normalize_address(socket.remote or "")
                for claimed, other in ((local, remote), (remote, local)):
                    others = owners.get(other)
                    if claimed in claimants and others is not None and len(others) == 1 \
                            and others[0] not in claimants[claimed]:
                        contested.add(claimed)
    return [_claim_warning(address, shared[address], shown) for address in sorted(contested, key=address_sort_key)]


def _claim_warning(address: str, names: list[str], shown: int) -> str:
    listed = ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")
    return (
        f"address {address} is claimed by {len(names)} machines ({listed}): their connections with other "
        f"machines at that address are joined only by exact addresses and ports. Unless it is shared on "
        f"purpose, one of them claims another's address"
    )
