// Package ledger is the pure core of the ledger: accounts, transfers, postings, two-phase
// holds, linked chains, split legs and their result codes. It does no I/O, reads no clock and
// starts no goroutine: time comes in as an argument, and what to persist, reply and send goes
// out as Effects, so every rule can be tested exhaustively and deterministically.
//
// # Shards
//
// Accounts are spread over shards by ShardOf. A Book is one shard's state. A transfer is run
// by the shard of its debit account. When the credit account lives on another shard the
// transfer is split: the debit shard posts "debit A / credit transit" and emits a Leg; the
// credit shard applies the Leg as "debit transit / credit B", once per LegKey, and answers
// with a LegResult. A posted inflow to a hot account (AccountHot) makes a buffered leg: the
// transfer's reply does not wait for it, and the sender may deliver it later, together with
// others, so that one hot account costs its shard one round per flush rather than one per
// request. Until it lands, the money is in transit and the hot account cannot spend it. A
// refused leg (the credit account is closed, over its credit limit, or
// would overflow) is reversed on the debit shard by a compensating posting, and the transfer
// ends as StateReversed with the refusal as its result.
//
// # The order of checks
//
// CreateTransfers checks each transfer in this order and answers with the first failure:
//
//  1. linked_event_chain_open (the batch ends inside a chain), then for each transfer:
//  2. id_must_not_be_zero
//  3. flags_are_mutually_exclusive (unknown flags, or more than one of pending, post, void)
//  4. debit_account_id_must_not_be_zero, credit_account_id_must_not_be_zero
//  5. accounts_must_be_different
//  6. pending_id_must_be_zero (not post or void), pending_id_must_not_be_zero (post or
//     void), pending_id_must_be_different
//  7. timeout_reserved_for_pending_transfer
//  8. ledger_must_not_be_zero, code_must_not_be_zero
//  9. amount_must_not_be_zero (except post and void, where 0 means the pending amount)
//  10. biz_id_too_long, timestamp_must_be_zero (and no state may be set)
//  11. debit_account_not_found, credit_account_not_found (transit accounts cannot be named)
//  12. accounts_must_have_the_same_ledger, transfer_must_have_the_same_ledger_as_accounts
//  13. exists_with_different_fields, exists (a reversed transfer answers its first result)
//  14. for post and void: pending_transfer_not_found, pending_transfer_not_pending,
//     pending_transfer_has_different_accounts, pending_transfer_has_different_ledger,
//     exceeds_pending_transfer_amount (post), pending_transfer_has_different_amount (void),
//     pending_transfer_already_posted, pending_transfer_already_voided (voided or reversed),
//     pending_transfer_expired, pending_transfer_in_flight (its hold leg is unanswered)
//  15. debit_account_closed, credit_account_closed
//  16. overflows_debits, overflows_credits (posted plus pending plus amount)
//  17. exceeds_credits (debits_must_not_exceed_credits), exceeds_debits
//     (credits_must_not_exceed_debits; for an account on another shard, checked when the
//     leg lands)
//  18. linked_chain_spans_shards (a chain member crediting a limited account elsewhere);
//     overloaded (the shard's outbox is full)
//
// The API adds linked_chain_spans_shards for chains whose debit accounts are on several
// shards, and overloaded when a shard's mailbox is full. In a failed chain every other member
// answers linked_event_failed and nothing of the chain remains.
//
// CreateAccounts checks: id_must_not_be_zero, id_reserved, flags_are_mutually_exclusive,
// hot_customer_must_allow_overdraft, hot_must_not_limit_credits, balances_must_be_zero,
// timestamp_must_be_zero, ledger_must_not_be_zero, code_must_not_be_zero,
// exists_with_different_fields, exists.
//
// # Invariants
//
// Audit checks the invariants of DESIGN.md on a stored state. Inside the Book, a posting that
// does not fit is a broken invariant and panics: the shard stops, and the process recovers
// from storage.
package ledger
