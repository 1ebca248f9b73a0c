/**
 * The candidate role, in two phases: `preCandidate` asks whether it could win at term + 1
 * (thesis §9.6) without changing anyone's term; `candidate` runs the real election (§5.2).
 * The machine moves on (to leader, to campaign, back to follower) through eventless
 * transitions guarded by `electionOutcome`.
 */
import type { Message } from './messages.ts';
import { countVotes, type Draft, handleVoteRequest, type RaftContext, refuseForwardedRead } from './state.ts';

export function stepCandidate(d: Draft, m: Message): void {
  switch (m.type) {
    case 'raft.voteResult': {
      // A granted pre-vote echoes the term we would campaign in; anything else carries the
      // voter's term. A result for the other phase, or an earlier round, counts for nothing.
      const pre = d.role === 'preCandidate';
      const wanted = pre && m.granted ? d.term + 1 : d.term;
      if (m.preVote !== pre || m.term !== wanted) {
        d.stats.dropped++;
        return;
      }
      if (!(m.from in d.votes)) d.votes = { ...d.votes, [m.from]: m.granted };
      return;
    }
    case 'raft.requestVote':
      handleVoteRequest(d, m);
      return;
    case 'raft.forwardRead':
      refuseForwardedRead(d, m.from, m.ids);
      return;
    default:
      d.stats.dropped++;
  }
}

export type ElectionOutcome = 'won' | 'lost' | 'pending';

/** Won with a quorum of granted votes; lost once a quorum can no longer be reached. */
export function electionOutcome(ctx: RaftContext): ElectionOutcome {
  const v = countVotes(ctx);
  if (v.granted >= v.quorum) return 'won';
  if (v.voters - v.rejected < v.quorum) return 'lost';
  return 'pending';
}
