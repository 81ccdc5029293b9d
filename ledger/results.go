// Result codes. The numbers and names mirror the enums of proto/ledger/v1/ledger.proto;
// api/results_test.go checks that they agree.

package ledger

// AccountResult is the outcome of one account; the numbers are those of the wire contract.
type AccountResult uint8

const (
	AccountResultOK                        AccountResult = 1
	AccountResultIDMustNotBeZero           AccountResult = 2
	AccountResultIDReserved                AccountResult = 3
	AccountResultFlagsAreMutuallyExclusive AccountResult = 4
	AccountResultBalancesMustBeZero        AccountResult = 5
	AccountResultTimestampMustBeZero       AccountResult = 6
	AccountResultLedgerMustNotBeZero       AccountResult = 7
	AccountResultCodeMustNotBeZero         AccountResult = 8
	AccountResultExistsWithDifferentFields AccountResult = 9
	AccountResultExists                    AccountResult = 10
	AccountResultOverloaded                AccountResult = 11
	// AccountResultHotCustomerMustAllowOverdraft: a customer account (not internal) may be hot
	// only if it allows overdraft, because one without overdraft posts in real time.
	AccountResultHotCustomerMustAllowOverdraft AccountResult = 12
	// AccountResultHotMustNotLimitCredits: a hot account's buffered credits cannot be checked
	// against a credit limit when they are accepted.
	AccountResultHotMustNotLimitCredits AccountResult = 13
)

var accountResultNames = [...]string{
	1:  "ok",
	2:  "id_must_not_be_zero",
	3:  "id_reserved",
	4:  "flags_are_mutually_exclusive",
	5:  "balances_must_be_zero",
	6:  "timestamp_must_be_zero",
	7:  "ledger_must_not_be_zero",
	8:  "code_must_not_be_zero",
	9:  "exists_with_different_fields",
	10: "exists",
	11: "overloaded",
	12: "hot_customer_must_allow_overdraft",
	13: "hot_must_not_limit_credits",
}

func (r AccountResult) String() string {
	if int(r) < len(accountResultNames) && accountResultNames[r] != "" {
		return accountResultNames[r]
	}
	return "unknown"
}

// TransferResult is the outcome of one transfer; the numbers are those of the wire contract.
type TransferResult uint8

const (
	ResultOK                                      TransferResult = 1
	ResultLinkedEventFailed                       TransferResult = 2
	ResultLinkedEventChainOpen                    TransferResult = 3
	ResultIDMustNotBeZero                         TransferResult = 4
	ResultFlagsAreMutuallyExclusive               TransferResult = 5
	ResultDebitAccountIDMustNotBeZero             TransferResult = 6
	ResultCreditAccountIDMustNotBeZero            TransferResult = 7
	ResultAccountsMustBeDifferent                 TransferResult = 8
	ResultPendingIDMustBeZero                     TransferResult = 9
	ResultPendingIDMustNotBeZero                  TransferResult = 10
	ResultPendingIDMustBeDifferent                TransferResult = 11
	ResultTimeoutReservedForPendingTransfer       TransferResult = 12
	ResultLedgerMustNotBeZero                     TransferResult = 13
	ResultCodeMustNotBeZero                       TransferResult = 14
	ResultAmountMustNotBeZero                     TransferResult = 15
	ResultBizIDTooLong                            TransferResult = 16
	ResultTimestampMustBeZero                     TransferResult = 17
	ResultDebitAccountNotFound                    TransferResult = 18
	ResultCreditAccountNotFound                   TransferResult = 19
	ResultAccountsMustHaveTheSameLedger           TransferResult = 20
	ResultTransferMustHaveTheSameLedgerAsAccounts TransferResult = 21
	ResultExistsWithDifferentFields               TransferResult = 22
	ResultExists                                  TransferResult = 23
	ResultPendingTransferNotFound                 TransferResult = 24
	ResultPendingTransferNotPending               TransferResult = 25
	ResultPendingTransferHasDifferentAccounts     TransferResult = 26
	ResultPendingTransferHasDifferentLedger       TransferResult = 27
	ResultExceedsPendingTransferAmount            TransferResult = 28
	ResultPendingTransferAlreadyPosted            TransferResult = 29
	ResultPendingTransferAlreadyVoided            TransferResult = 30
	ResultPendingTransferExpired                  TransferResult = 31
	ResultDebitAccountClosed                      TransferResult = 32
	ResultCreditAccountClosed                     TransferResult = 33
	ResultOverflowsDebits                         TransferResult = 34
	ResultOverflowsCredits                        TransferResult = 35
	ResultExceedsCredits                          TransferResult = 36
	ResultExceedsDebits                           TransferResult = 37
	ResultLinkedChainSpansShards                  TransferResult = 38
	ResultOverloaded                              TransferResult = 39
	ResultPendingTransferHasDifferentAmount       TransferResult = 40
	ResultPendingTransferInFlight                 TransferResult = 41
	// ResultIDInFlight: another shard is booking a different transfer with this id. Retry: the
	// retry answers exists_with_different_fields if that transfer took the id, or runs.
	ResultIDInFlight                      TransferResult = 42
	ResultPendingTransferHasDifferentCode TransferResult = 43
	// ResultChainIDsMustBeDifferent: a linked chain names one transfer id twice (it can never
	// succeed); answered by the second member with the id.
	ResultChainIDsMustBeDifferent TransferResult = 44
)

// Burns reports whether a refusal depends on the ledger's state rather than on the request
// alone or on a passing condition of the system. Such a refusal is stored: the transfer ends as
// StateFailed, its id is taken, and the same request answers the same refusal again, whether
// it ran on one shard or was split over two (a retry can never succeed later because the state
// changed meanwhile). Refusals of the request alone (validation) and passing ones (overloaded,
// an id or a hold in flight, a chain over shards) are not stored: the id stays free.
func (r TransferResult) Burns() bool {
	return r < ResultLinkedChainSpansShards && r >= ResultDebitAccountNotFound &&
		r != ResultExistsWithDifferentFields && r != ResultExists ||
		r == ResultPendingTransferHasDifferentAmount || r == ResultPendingTransferHasDifferentCode
}

var transferResultNames = [...]string{
	1:  "ok",
	2:  "linked_event_failed",
	3:  "linked_event_chain_open",
	4:  "id_must_not_be_zero",
	5:  "flags_are_mutually_exclusive",
	6:  "debit_account_id_must_not_be_zero",
	7:  "credit_account_id_must_not_be_zero",
	8:  "accounts_must_be_different",
	9:  "pending_id_must_be_zero",
	10: "pending_id_must_not_be_zero",
	11: "pending_id_must_be_different",
	12: "timeout_reserved_for_pending_transfer",
	13: "ledger_must_not_be_zero",
	14: "code_must_not_be_zero",
	15: "amount_must_not_be_zero",
	16: "biz_id_too_long",
	17: "timestamp_must_be_zero",
	18: "debit_account_not_found",
	19: "credit_account_not_found",
	20: "accounts_must_have_the_same_ledger",
	21: "transfer_must_have_the_same_ledger_as_accounts",
	22: "exists_with_different_fields",
	23: "exists",
	24: "pending_transfer_not_found",
	25: "pending_transfer_not_pending",
	26: "pending_transfer_has_different_accounts",
	27: "pending_transfer_has_different_ledger",
	28: "exceeds_pending_transfer_amount",
	29: "pending_transfer_already_posted",
	30: "pending_transfer_already_voided",
	31: "pending_transfer_expired",
	32: "debit_account_closed",
	33: "credit_account_closed",
	34: "overflows_debits",
	35: "overflows_credits",
	36: "exceeds_credits",
	37: "exceeds_debits",
	38: "linked_chain_spans_shards",
	39: "overloaded",
	40: "pending_transfer_has_different_amount",
	41: "pending_transfer_in_flight",
	42: "id_in_flight",
	43: "pending_transfer_has_different_code",
	44: "chain_ids_must_be_different",
}

func (r TransferResult) String() string {
	if int(r) < len(transferResultNames) && transferResultNames[r] != "" {
		return transferResultNames[r]
	}
	return "unknown"
}
