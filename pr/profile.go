package pr

import "github.com/prhelper/prhelper/scsi"

// Profile selects, point by point, whose behaviour the engine reproduces where
// LIO, SCST and SPC-4 disagree (docs/spc4-pr.md §14, D1-D29). Every deviation the
// engine makes reads one of these fields; there is no other switch. LIO() is the
// default and is byte-exact to the Linux target (current, ≥ 6.12); SPC4() takes
// the standard's side (SCST's where the standard is silent).
//
// D20 (which RELEASE/unregister types queue 2A/04) and D21 (2A/05 for preempted
// registrants) are not fields: LIO, SCST and the standard agree there and only
// tgt differs.
type Profile struct {
	// Name labels the profile in logs ("lio", "spc4").
	Name string

	// ReportUnitAttentions makes Execute and CheckAccess report a pending unit
	// attention as CHECK CONDITION 06h/ASC/ASCQ on the nexus's next command and
	// then clear it (docs/spc4-pr.md §6 step 1, §9). Unit attentions are recorded in
	// State whatever this says. LIO: true.
	ReportUnitAttentions bool

	// ReleaseTypeMismatchInvalidRelease (D1): RELEASE from the holder with a TYPE or
	// SCOPE other than the reservation's answers CHECK CONDITION 05/26/04 INVALID
	// RELEASE OF PERSISTENT RESERVATION instead of RESERVATION CONFLICT.
	// LIO false (RC), SCST true, SPC-4 true.
	ReleaseTypeMismatchInvalidRelease bool

	// UnregisteredCommFailure (D2): RESERVE, RELEASE, CLEAR and REGISTER AND MOVE
	// from an unregistered nexus while no reservation exists answer CHECK
	// CONDITION 02/08/00 LOGICAL UNIT COMMUNICATION FAILURE instead of RC.
	// LIO true, SCST false, SPC-4 false.
	UnregisteredCommFailure bool

	// ParamListLengthSense (D3) is the sense for a PR OUT parameter list shorter
	// than 24 bytes, or other than 24 without SPEC_I_PT (not REGISTER AND MOVE).
	// LIO, SCST and SPC-4: 05/1A/00 PARAMETER LIST LENGTH ERROR (tgt 05/24/00).
	ParamListLengthSense scsi.Sense

	// ScopeSense (D4) is the sense for a SCOPE other than LU_SCOPE on RESERVE and
	// PREEMPT. LIO 05/26/00, SCST and SPC-4 05/24/00.
	ScopeSense scsi.Sense

	// GenerationOnUnregister (D5): REGISTER/RIEK with SARK=0 from a registered
	// nexus increments PRgeneration. LIO false, SCST true, SPC-4 true.
	GenerationOnUnregister bool

	// GenerationOnNoopRegister (D6): REGISTER/RIEK with SARK=0 from an
	// unregistered nexus (a GOOD no-op) increments PRgeneration.
	// LIO false, SCST true, SPC-4 false (ambiguous; LIO's choice kept).
	GenerationOnNoopRegister bool

	// PreemptZeroKeyNoReservationConflict (D7): PREEMPT with SARK=0 while no
	// reservation exists answers RC instead of CHECK CONDITION 05/26/00.
	// LIO false, SCST true, SPC-4 false.
	PreemptZeroKeyNoReservationConflict bool

	// PreemptRepresentative (D8): under an all-registrants reservation, a PREEMPT
	// whose non-zero SARK equals the key of LIO's "representative" holder
	// registration preempts the reservation (new type, caller holds it) instead of
	// only removing the registrations with that key. LIO true, SCST false, SPC-4 false.
	PreemptRepresentative bool

	// PreemptRemovesCaller (D9): a PREEMPT that removes registrations by key
	// (no reservation, or SARK not the holder's) also removes the caller's own
	// registration when its key equals SARK. LIO true, SCST false, SPC-4 false
	// (ambiguous in the standard; SCST's reading kept).
	PreemptRemovesCaller bool

	// ReleaseChecksNonHolderKey (D10): RELEASE from a registered nexus checks the
	// RESERVATION KEY (RC on mismatch) even when the nexus is not the holder or
	// no reservation exists. LIO false, SCST true, SPC-4 true.
	ReleaseChecksNonHolderKey bool

	// ShortAllocationInvalid (D11): PR IN with an allocation length below the
	// header (8 bytes; 6 for REPORT CAPABILITIES) answers CHECK CONDITION
	// 05/24/00 instead of GOOD with truncated data. LIO true, SCST false, SPC-4 false.
	ShortAllocationInvalid bool

	// FullStatusCountsFitting (D12): READ FULL STATUS stops at the first
	// descriptor that does not fit the allocation length, and ADDITIONAL LENGTH
	// counts only the descriptors returned. LIO true, SCST false, SPC-4 false.
	FullStatusCountsFitting bool

	// ReadReservationHeaderOnly (D13): READ RESERVATION with a reservation held
	// and an allocation length of 8..21 returns the header (ADDITIONAL LENGTH 16)
	// followed by zeros up to the allocation length, without key or type.
	// LIO true, SCST false, SPC-4 false.
	ReadReservationHeaderOnly bool

	// ReadKeysWholeKeys (D14): READ KEYS copies only whole keys; bytes of a key
	// cut by the allocation length are zero. LIO true, SCST true, SPC-4 false.
	ReadKeysWholeKeys bool

	// UAClearAll (D15): reporting a unit attention clears every one queued for
	// that nexus (LIO with UA_INTLCK_CTRL=00b), instead of one at a time (SAM).
	// LIO true, SCST false, SPC-4 false.
	UAClearAll bool

	// NodeACLGranularity (D16): unit attentions are queued per initiator device
	// and target port (LIO's node ACL + mapped LUN, shared by every ISID of one
	// iSCSI name), and the access check (§10) treats a nexus as registered when
	// any registration of its initiator device exists at that target port, unless
	// the holder is that device with another ISID. false: both per I_T nexus.
	// LIO true, SCST false, SPC-4 false.
	NodeACLGranularity bool

	// Capabilities (D17) is the REPORT CAPABILITIES answer; PTPL_A is filled
	// from State.APTPL. LIO and SPC-4: 00 08 1D 90 EA 01 00 00; SCST: ALLOW
	// COMMANDS 100b (1D C0).
	Capabilities scsi.Capabilities

	// ClearResetsAPTPL (D18): CLEAR turns PTPL_A off. LIO true, SCST false, SPC-4 false.
	ClearResetsAPTPL bool

	// MoveZeroKeySense (D19) is the sense for REGISTER AND MOVE with SARK=0.
	// LIO 05/26/00, SCST 05/24/00, SPC-4 05/26/00.
	MoveZeroKeySense scsi.Sense

	// AccessByDataDirection (§10.1): a non-holder's command that is not on the
	// always-allowed or registered-or-WE lists is judged by its data direction,
	// as LIO core_scsi3_pr_seq_non_holder does; false uses the SPC-4/SBC-3
	// per-command table (reads allowed under WE, writes never). LIO true,
	// SCST false, SPC-4 false.
	AccessByDataDirection bool

	// ModeSenseRegisteredUnderEA (D22): a registered non-holder under EXCLUSIVE
	// ACCESS may run MODE SENSE, READ BUFFER, READ ATTRIBUTE, RECEIVE DIAGNOSTIC
	// RESULTS and SECURITY PROTOCOL IN. LIO true, SCST false, SPC-4 false.
	ModeSenseRegisteredUnderEA bool

	// ReadCapacity16AlwaysAllowed (D23): READ CAPACITY(16) is on the
	// always-allowed list like READ CAPACITY(10). LIO false, SCST false, SPC-4 true.
	ReadCapacity16AlwaysAllowed bool

	// SyncCacheUnregisteredUnderWE (D24): SYNCHRONIZE CACHE from an unregistered
	// nexus is allowed under the write-exclusive types. LIO true, SCST false, SPC-4 false.
	SyncCacheUnregisteredUnderWE bool

	// CRHAllRegistrantsROAR (D25): with registrations present, SPC-2 RESERVE/RELEASE
	// from any registrant under a registrants-only or all-registrants reservation
	// is a GOOD no-op (CRH, SPC-4 §5.7.3); LIO records the type on the holder's
	// registration only, so other registrants get RC. LIO false, SCST true, SPC-4 true.
	CRHAllRegistrantsROAR bool

	// NoDataPROutByDirection (D26): a CLEAR, PREEMPT, PREEMPT AND ABORT,
	// RELEASE, RESERVE or REGISTER AND MOVE with PARAMETER LIST LENGTH 0 from an
	// unregistered non-holder under a Write Exclusive family reservation (types
	// 1, 5, 7) has no data-out, so LIO's reservation check passes it by data
	// direction (rule 4 of §10) and the PR OUT handler answers 05/1A/00
	// PARAMETER LIST LENGTH ERROR; SPC-4 table 65 makes it a conflict. Seen in
	// the lab (tools/prgen -zero-len-we). LIO true, SCST false, SPC-4 false.
	NoDataPROutByDirection bool

	// SpecIPTDuplicates (D27): REGISTER with SPEC_I_PT registers the commanding
	// nexus first and then every TransportID of the list that was not
	// registered before the command, so a TransportID naming the commanding
	// nexus, or one repeated in the list, adds a second registration of one
	// I_T nexus, as LIO's core_scsi3_decode_spec_i_port does (it looks only at
	// the registrations that existed when the command arrived). Every later
	// command of that nexus finds the first of its registrations (§5); READ
	// KEYS and READ FULL STATUS list both. SPC-4 §5.7.7 has one registration
	// per I_T nexus: false skips them. Seen in the lab (tools/prgen -dup-tids).
	// LIO true, SCST false, SPC-4 false.
	SpecIPTDuplicates bool

	// MoveSourceScope (D28): REGISTER AND MOVE writes the reservation's TYPE
	// into the SCOPE that LIO keeps with the source registration
	// (core_scsi3_emulate_pro_register_and_move assigns the holder's type to its
	// scope variable and stores that in the source, not the destination), and
	// the destination takes the reservation with whatever scope its own
	// registration carried. A registration that was once the source of a move
	// without UNREG and later receives the reservation by a move holds it with
	// a scope of 1h-8h: invisible in READ RESERVATION and READ FULL STATUS
	// (only the high nibble is reported), but unequal to every SCOPE a command
	// sends, so RESERVE and RELEASE by the holder answer RESERVATION CONFLICT and
	// a PREEMPT counts as a change of scope (2Ah/04h to the other registrants).
	// RESERVE, PREEMPT and RELEASE reset the scope they touch to 0; under an
	// all-registrants reservation the next representative inherits it. SPC-4
	// §5.7.8: the reservation moves with its scope unchanged, false.
	// Seen in the lab (tools/prgen -move-no-unreg). LIO true, SCST false, SPC-4 false.
	MoveSourceScope bool

	// SharedRegisteredFlag (D29): the reservation check (§10) reads
	// "registered" from one flag per initiator device and target port (LIO's
	// DEF_PR_REG_ACTIVE of the node ACL's LUN entry), which adding any
	// registration of that device at that port sets and removing any clears.
	// A nexus that keeps a registration after another registration of its
	// device at its port went away (a D27 duplicate, or another ISID of an
	// iSCSI initiator) is judged unregistered: its CLEAR, PREEMPT and RELEASE
	// conflict while a reservation exists, and under the registrants-only and
	// all-registrants types it loses a registrant's access, until a new
	// registration of the device at that port is added or a restart re-adds
	// them (Registration.FlagCleared). The PR OUT handlers still find the
	// registration. SPC-4 §5.7.1: a nexus is registered while it has a
	// registration. Seen in the lab (tools/prgen with every flag on, seeds
	// 5004, 5005, 5022). LIO true, SCST false, SPC-4 false.
	SharedRegisteredFlag bool

	// RestoreCountsGeneration (§11): after a power cycle with APTPL active the
	// generation restarts at 0 and goes up by one per restored registration, as
	// LIO re-adds them; false keeps the persisted generation, as SCST does.
	// LIO true, SCST false, SPC-4 false.
	RestoreCountsGeneration bool

	// MaxRegistrations bounds the registrations of one logical unit: a command
	// that would add registrations past it answers CHECK CONDITION 05/55/04
	// INSUFFICIENT REGISTRATION RESOURCES and changes nothing (SPC-4 §5.7.7,
	// docs/spc4-pr.md §7.7). Not a point where targets disagree but a resource
	// bound: LIO, SCST and tgt have none; 0 means none. LIO() and SPC4()
	// leave it 0; the daemon sets it (--max-registrations).
	MaxRegistrations int

	// EnforcePRISIDs: LIO's enforce_pr_isids device attribute (default 1): an
	// iSCSI format 00b TransportID (no ISID) in a SPEC_I_PT list is rejected with
	// 05/26/00. LIO true, SCST false, SPC-4 false.
	EnforcePRISIDs bool
}

// lioCapabilities is LIO's REPORT CAPABILITIES answer 00 08 1D 90 EA 01 00 00
// (core_scsi3_pri_report_capabilities, docs/spc4-pr.md §4.3).
var lioCapabilities = scsi.Capabilities{
	CRH: true, SIPC: true, ATPC: true, PTPLC: true, TMV: true, AllowCommands: 1,
	TypeMask: scsi.MaskWriteExclusiveAllRegs | scsi.MaskExclusiveAccessRegOnly |
		scsi.MaskWriteExclusiveRegOnly | scsi.MaskExclusiveAccess |
		scsi.MaskWriteExclusive | scsi.MaskExclusiveAccessAllRegs,
}

// senseInsufficientRegistrations is 05/55/04 INSUFFICIENT REGISTRATION
// RESOURCES (SPC-4 §5.7.7; docs/spc4-pr.md §7.7).
var senseInsufficientRegistrations = scsi.Sense{Key: scsi.KeyIllegalRequest, ASC: 0x55, ASCQ: 0x04}

// roomFor reports whether st may take n more registrations under
// MaxRegistrations.
func (p Profile) roomFor(st *State, n int) bool {
	return p.MaxRegistrations <= 0 || len(st.Registrations)+n <= p.MaxRegistrations
}

// senseInvalidRelease is 05/26/04 INVALID RELEASE OF PERSISTENT RESERVATION.
var senseInvalidRelease = scsi.Sense{Key: scsi.KeyIllegalRequest, ASC: 0x26, ASCQ: 0x04}

// senseLUCommFailure is LIO's TCM_LOGICAL_UNIT_COMMUNICATION_FAILURE: NOT READY,
// ASC 08h (docs/spc4-pr.md §1). It differs from scsi.SenseLUNCommFailure (QEMU's,
// ABORTED COMMAND).
var senseLUCommFailure = scsi.Sense{Key: scsi.KeyNotReady, ASC: 0x08, ASCQ: 0x00}

// LIO returns the profile of the current Linux target (drivers/target
// target_core_pr.c, ≥ 6.12), the engine's default.
func LIO() Profile {
	return Profile{
		Name:                                "lio",
		ReportUnitAttentions:                true,
		ReleaseTypeMismatchInvalidRelease:   false,
		UnregisteredCommFailure:             true,
		ParamListLengthSense:                scsi.SenseInvalidParamLen,
		ScopeSense:                          scsi.SenseInvalidParam,
		GenerationOnUnregister:              false,
		GenerationOnNoopRegister:            false,
		PreemptZeroKeyNoReservationConflict: false,
		PreemptRepresentative:               true,
		PreemptRemovesCaller:                true,
		ReleaseChecksNonHolderKey:           false,
		ShortAllocationInvalid:              true,
		FullStatusCountsFitting:             true,
		ReadReservationHeaderOnly:           true,
		ReadKeysWholeKeys:                   true,
		UAClearAll:                          true,
		NodeACLGranularity:                  true,
		Capabilities:                        lioCapabilities,
		ClearResetsAPTPL:                    true,
		MoveZeroKeySense:                    scsi.SenseInvalidParam,
		AccessByDataDirection:               true,
		ModeSenseRegisteredUnderEA:          true,
		ReadCapacity16AlwaysAllowed:         false,
		SyncCacheUnregisteredUnderWE:        true,
		CRHAllRegistrantsROAR:               false,
		NoDataPROutByDirection:              true,
		SpecIPTDuplicates:                   true,
		MoveSourceScope:                     true,
		SharedRegisteredFlag:                true,
		RestoreCountsGeneration:             true,
		EnforcePRISIDs:                      true,
	}
}

// SPC4 returns the standard's choices at every point of docs/spc4-pr.md §14 (SCST's
// where the standard is ambiguous: D6 keeps LIO's, D9 SCST's).
func SPC4() Profile {
	return Profile{
		Name:                                "spc4",
		ReportUnitAttentions:                true,
		ReleaseTypeMismatchInvalidRelease:   true,
		UnregisteredCommFailure:             false,
		ParamListLengthSense:                scsi.SenseInvalidParamLen,
		ScopeSense:                          scsi.SenseInvalidField,
		GenerationOnUnregister:              true,
		GenerationOnNoopRegister:            false,
		PreemptZeroKeyNoReservationConflict: false,
		PreemptRepresentative:               false,
		PreemptRemovesCaller:                false,
		ReleaseChecksNonHolderKey:           true,
		ShortAllocationInvalid:              false,
		FullStatusCountsFitting:             false,
		ReadReservationHeaderOnly:           false,
		ReadKeysWholeKeys:                   false,
		UAClearAll:                          false,
		NodeACLGranularity:                  false,
		Capabilities:                        lioCapabilities,
		ClearResetsAPTPL:                    false,
		MoveZeroKeySense:                    scsi.SenseInvalidParam,
		AccessByDataDirection:               false,
		ModeSenseRegisteredUnderEA:          false,
		ReadCapacity16AlwaysAllowed:         true,
		SyncCacheUnregisteredUnderWE:        false,
		CRHAllRegistrantsROAR:               true,
		NoDataPROutByDirection:              false,
		SpecIPTDuplicates:                   false,
		MoveSourceScope:                     false,
		SharedRegisteredFlag:                false,
		RestoreCountsGeneration:             false,
		EnforcePRISIDs:                      false,
	}
}
