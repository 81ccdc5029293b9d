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
// with a LegResult. The caller answers a split transfer once its leg is answered.
//
// Only a credit account that limits its credits (credits_must_not_exceed_debits) can refuse a
// leg, and only for a new transfer or hold (a Refusable leg). Such a transfer does not post on
// the debit account: it holds the amount there (StateInFlight) until the credit shard answers;
// an acceptance posts the held amount, a refusal releases it and the transfer fails
// (StateFailed) with the refusal. A refusal therefore never credits the debit account, and
// can neither overflow it nor push it past a limit. No other leg may be refused: the debit
// shard checked the account's existence and flags (which never change), and 128-bit totals
// cannot overflow; a refusal of one is a broken invariant.
//
// A posted inflow to a hot account (AccountHot) makes a buffered leg: the transfer's reply does
// not wait for it, and the sender may deliver it later, together with others, so that one hot
// account costs its shard one round per flush rather than one per request. Until it lands, the
// money is in transit and the hot account cannot spend it. A hot account cannot limit its
// credits, so a buffered leg cannot be refused.
//
// # Answers are final
//
// An answer is a promise: ok means the transfer is durable and its outcome final; exists means
// the same transfer was created before and succeeded. A transfer that repeats one whose leg is
// still unanswered answers when that leg does, with the first copy's outcome (LegAwait): exists,
// or the same refusal.
//
// A refusal that depends on the ledger's state (TransferResult.Burns: the refusals of steps 12
// to 18 below, but for exists and exists_with_different_fields) is stored: the transfer ends as StateFailed,
// its id is taken, and the same request answers the same refusal again, whether the transfer
// ran on one shard or was split. A retry can never succeed later because the state changed
// meanwhile: a new attempt needs a new id. Refusals of the request alone (steps 1 to 10) and
// passing ones (id_in_flight, pending_transfer_in_flight, overloaded, linked_chain_spans_shards)
// are not stored; the id stays free. (A refusal of steps 12 and 13 for an id that another
// transfer already holds is not stored either: the id is that transfer's.)
//
// # The order of checks
//
// CreateTransfers checks each transfer in this order and answers with the first failure:
//
//  1. linked_event_chain_open (the batch ends inside a chain); chain_ids_must_be_different
//     (a chain names one id twice: its second member), then for each transfer:
//  2. id_must_not_be_zero
//  3. flags_are_mutually_exclusive (unknown flags, or more than one of pending, post, void)
//  4. debit_account_id_must_not_be_zero, credit_account_id_must_not_be_zero
//  5. accounts_must_be_different
//  6. pending_id_must_be_zero (not post or void), pending_id_must_not_be_zero (post or
//     void), pending_id_must_be_different
//  7. timeout_reserved_for_pending_transfer
//  8. ledger_must_not_be_zero, code_must_not_be_zero
//  9. amount_must_not_be_zero (except post and void, where 0 means the pending amount)
//  10. biz_id_too_long, timestamp_must_be_zero (and no state or result may be set)
//  11. id_in_flight (another shard is booking a different transfer with this id: retry)
//  12. debit_account_not_found, credit_account_not_found (transit accounts cannot be named)
//  13. accounts_must_have_the_same_ledger, transfer_must_have_the_same_ledger_as_accounts
//  14. exists_with_different_fields, then for the same request: its stored refusal if it
//     failed, else exists (answered once its leg, if any is unanswered, is answered). A post
//     or void that asked for 0 is the same request as the stored one, which holds the amount
//     it moved.
//  15. for post and void: pending_transfer_not_found (also a hold that failed),
//     pending_transfer_not_pending, pending_transfer_has_different_accounts,
//     pending_transfer_has_different_ledger, pending_transfer_has_different_code,
//     exceeds_pending_transfer_amount (post), pending_transfer_has_different_amount (void),
//     pending_transfer_already_posted, pending_transfer_already_voided,
//     pending_transfer_expired, pending_transfer_in_flight (its hold leg is unanswered)
//  16. debit_account_closed, credit_account_closed
//  17. overflows_debits, overflows_credits (posted plus pending plus amount; with 128-bit
//     totals these cannot happen, and stay as checks)
//  18. exceeds_credits (debits_must_not_exceed_credits), exceeds_debits
//     (credits_must_not_exceed_debits; for an account on another shard, checked when the
//     leg lands)
//  19. linked_chain_spans_shards (a chain member crediting a limited account elsewhere);
//     overloaded (the shard's outbox is full)
//
// The API adds linked_chain_spans_shards for chains whose debit accounts are on several
// shards, and refuses a whole request as overloaded when a shard is full. In a failed chain a
// member whose id is known answers as it would alone (so a chain sent again answers what it
// answered the first time), the failing member its refusal, and the others
// linked_event_failed; nothing of the chain remains. A refusal that burns is stored only if
// the failing member, run alone on the state the chain found, fails the same way (a refusal
// the chain's own undone members caused, such as a second post of a hold the first member
// posted, is not the ledger's state); the failing member and the members before it (which
// passed every check) are then stored with their answers.
//
// CreateAccounts checks: id_must_not_be_zero, id_reserved, flags_are_mutually_exclusive,
// hot_customer_must_allow_overdraft, hot_must_not_limit_credits, balances_must_be_zero,
// timestamp_must_be_zero, ledger_must_not_be_zero, code_must_not_be_zero,
// exists_with_different_fields, exists.
//
// # Invariants
//
// Audit checks the invariants (docs/ARCHITECTURE.md, "Invariants") on a stored state.
// Inside the Book, a posting that does not fit is a broken invariant and panics: the shard
// stops, and the process recovers from storage.
package ledger
