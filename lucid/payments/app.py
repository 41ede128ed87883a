"""Cluster 07, TRON payments: wiring of its server.

The wallet plane: USDT-TRC20 payouts, wallets and staking on TRON, and the verification of
nodes' registration stakes (``VerifyStake``); isolated from the chain.
Owns the proto package ``lucid.payments.v1``, the ``payments_*`` collections and the
Redis prefix ``lucid:payments:``. Talks to TRON only over a node's HTTP API
(``settings.tron_endpoint``: ``lucid devnet tron`` on one machine). Two workers run:
the payout sender and the transfer sender (wallet transactions, payments, refunds).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from lucid.lib.sealing import Sealer
from lucid.payments import schema
from lucid.payments.calls import CallLimits
from lucid.payments.controls import PayoutControls
from lucid.payments.kyc import Kyc
from lucid.payments.limits import LimitCheck, PayoutLimits
from lucid.payments.network import TronNetwork
from lucid.payments.operations import WalletOperations
from lucid.payments.payouts import Payouts
from lucid.payments.reconcile import Reconciler
from lucid.payments.sender import TRON_BREAKER, PayoutSender
from lucid.payments.servicers.kyc import KycServiceServicer
from lucid.payments.servicers.payments import PaymentServiceServicer
from lucid.payments.servicers.payouts import PayoutServiceServicer
from lucid.payments.servicers.staking import StakingServiceServicer
from lucid.payments.servicers.tron import TronNetworkServiceServicer, UsdtServiceServicer
from lucid.payments.servicers.wallets import WalletServiceServicer
from lucid.payments.stakes import Stakes
from lucid.payments.store.audit import AuditStore
from lucid.payments.store.batches import BatchStore
from lucid.payments.store.kyc import KycStore
from lucid.payments.store.payouts import PayoutStore
from lucid.payments.store.transfers import TransferStore
from lucid.payments.store.wallets import WalletStore
from lucid.payments.transfer_sender import TransferSender
from lucid.payments.transfers import Transfers
from lucid.payments.v1 import (
    kyc_pb2_grpc,
    payments_pb2_grpc,
    payouts_pb2_grpc,
    tron_pb2_grpc,
    wallets_pb2_grpc,
)
from lucid.payments.wallets import Wallets
from lucid.runtime.breaker import CircuitBreaker
from lucid.runtime.limits import RateLimiter
from lucid.runtime.lockdown import LockdownGate
from lucid.runtime.server import ClusterApp, Runtime

PAYOUT_KEY_FILE = "payout-hot-wallet.sealed"
"""A sealed key under ``var/secrets`` the payout hot wallet is made from on first start."""


@dataclass(frozen=True)
class PaymentsOptions:
    """Knobs tests change."""

    tx_lifetime_s: float = 60.0
    """How long a signed transaction is valid (TRON's usual 60 s)."""
    expiry_margin_s: float = 10.0
    """How long past its expiration a transaction is given before it counts as dead."""
    breaker_open_s: float = 300.0
    """How long the TRON breaker stays open before trial sends (spec 07: 300 s)."""


async def build(runtime: Runtime, options: PaymentsOptions | None = None) -> ClusterApp:
    """The payments server."""
    options = options or PaymentsOptions()
    settings, clock, db = runtime.settings, runtime.clock, runtime.datastores.db
    network = TronNetwork(
        settings.tron_endpoint, settings.tron_usdt_contract, settings.tron_fee_limit_sun
    )
    store = PayoutStore(db)
    audit = AuditStore(db, clock)
    wallets = Wallets(
        WalletStore(db),
        Sealer(settings.sealing_passphrase()),
        clock,
        provisioned=settings.secrets_dir / PAYOUT_KEY_FILE,
    )
    limits = PayoutLimits()
    kyc = Kyc(KycStore(db), audit, clock)
    sender = PayoutSender(
        store,
        network,
        wallets,
        audit,
        clock,
        poll_s=settings.payout_poll_interval_s,
        tx_lifetime_s=options.tx_lifetime_s,
        expiry_margin_s=options.expiry_margin_s,
        max_concurrent=lambda: limits.max_concurrent,
        breaker=CircuitBreaker("tron", replace(TRON_BREAKER, open_s=options.breaker_open_s), clock),
    )
    payouts = Payouts(
        store,
        audit,
        LimitCheck(store, clock, limits),
        clock,
        batches=BatchStore(db),
        kyc=kyc,
        ensure_funds=sender.ensure_funds,
        wake=sender.wake,
        events=runtime.events,
        frozen=LockdownGate(runtime.channels).admin_only_now,
    )

    controls = PayoutControls(
        store,
        payouts.limits,
        sender,
        network,
        wallets=wallets,
        audit=audit,
        clock=clock,
        settings=db[schema.SETTINGS],
    )

    operations = WalletOperations(db[schema.STAKES], network, wallets, audit, clock)

    transfer_store = TransferStore(db)
    transfer_sender = TransferSender(
        transfer_store,
        network,
        wallets,
        audit,
        clock,
        poll_s=settings.payout_poll_interval_s,
        tx_lifetime_s=options.tx_lifetime_s,
        expiry_margin_s=options.expiry_margin_s,
    )
    reconciler = Reconciler(
        store, network, db[schema.RECONCILIATIONS], audit, clock, transfers=transfer_store
    )
    transfers = Transfers(
        transfer_store, network, wallets, transfer_sender, audit=audit, clock=clock
    )

    limiter = RateLimiter(runtime.datastores.cache, clock, "payments")

    def calls(group: str) -> CallLimits:
        return CallLimits(limiter, group)

    async def ready() -> None:
        await wallets.payout_wallet()
        await controls.load_limits()
        await payouts.recover_batches()

    async def payout_states() -> dict[tuple[str, ...], float]:
        return {(state,): n for state, n in (await store.counts_by("status")).items()}

    payout_gauge = runtime.metrics.sampled(
        "payouts", "Payouts in each state (pending … confirmed).", payout_states, labels=("state",)
    )

    return ClusterApp(
        servicers=[
            (
                payouts_pb2_grpc.add_PayoutServiceServicer_to_server,
                PayoutServiceServicer(
                    payouts, sender, controls, settings.tron_confirmations, calls("payouts")
                ),
            ),
            (
                kyc_pb2_grpc.add_KycServiceServicer_to_server,
                KycServiceServicer(kyc, calls("payouts")),
            ),
            (
                tron_pb2_grpc.add_StakingServiceServicer_to_server,
                StakingServiceServicer(operations, calls("staking")),
            ),
            (
                payments_pb2_grpc.add_PaymentServiceServicer_to_server,
                PaymentServiceServicer(
                    reconciler, transfers, settings.tron_confirmations, calls("payments")
                ),
            ),
            (
                wallets_pb2_grpc.add_WalletServiceServicer_to_server,
                WalletServiceServicer(
                    wallets, network, transfers, settings.tron_confirmations, calls("wallets")
                ),
            ),
            (
                tron_pb2_grpc.add_TronNetworkServiceServicer_to_server,
                TronNetworkServiceServicer(network, wallets, settings, calls("network")),
            ),
            (
                tron_pb2_grpc.add_UsdtServiceServicer_to_server,
                UsdtServiceServicer(
                    network,
                    wallets,
                    operations,
                    calls("usdt"),
                    Stakes(network, settings.tron_stake_address),
                ),
            ),
        ],
        collections=schema.COLLECTIONS,
        on_ready=[ready],
        tasks=[sender.run, transfer_sender.run, payout_gauge],
        on_stop=[network.close],
    )
