// Sessions: a table with filters (state, user) and paging, terminate with a confirmation;
// a session's page with its recording (played from the rdp cluster's verified replay
// stream), chunks, Merkle root and anchoring block, each chunk's inclusion proof checked
// here in the browser against the session root.
import { append, confirmDialog, field, h, select, statusLine, table } from "../dom";
import { authed, clients, describe } from "../rpc";
import { checkInclusion } from "../merkle";
import { recordingPlayer } from "../player";
import { type Chunk, ChunkState } from "../gen/lucid/sessions/v1/chunks";
import { AdminSessionState } from "../gen/lucid/admin/v1/admin";
import type { AdminSession } from "../gen/lucid/admin/v1/operations";
import type { Timestamp } from "../gen/google/protobuf/timestamp";

const PAGE_SIZE = 10;

export function when(time: Timestamp | undefined): string {
  if (!time || (!time.seconds && !time.nanos)) return "–";
  return new Date(Number(time.seconds) * 1000).toISOString().replace(".000Z", "Z");
}

export function stateName(state: AdminSessionState): string {
  return AdminSessionState[state]?.toLowerCase() ?? "unknown";
}

async function terminate(session: AdminSession, status: ReturnType<typeof statusLine>): Promise<boolean> {
  const answer = await confirmDialog(
    "Terminate session",
    `Session ${session.sessionId} (${session.name || "unnamed"}) will be ended and its recording finalized.`,
    { action: "Terminate" },
  );
  if (!answer) return false;
  try {
    await clients.sessions.terminateSession({ sessionId: session.sessionId, reason: answer.reason }, authed())
      .response;
    status.say(`Session ${session.sessionId} terminated.`);
    return true;
  } catch (error) {
    status.say(`Terminate failed: ${describe(error)}`, true);
    return false;
  }
}

export function sessionsPage(main: HTMLElement, param: string): void {
  if (param) return sessionPage(main, param);
  const status = statusLine();
  const state = select("state", [
    ["0", "Any state"],
    [String(AdminSessionState.ACTIVE), "Active"],
    [String(AdminSessionState.IDLE), "Idle"],
    [String(AdminSessionState.TERMINATED), "Terminated"],
  ]);
  const user = h("input", { name: "user", placeholder: "user id (UUID)", spellcheck: "false" });
  const holder = h("div", { class: "table-holder" });
  const pageInfo = h("span", { "aria-live": "polite" });
  const previous = h("button", { type: "button", disabled: true }, "Previous page");
  const next = h("button", { type: "button", disabled: true }, "Next page");
  const tokens: string[] = [""];

  async function load(): Promise<void> {
    try {
      const reply = await clients.sessions.listSessions(
        {
          state: Number(state.value),
          userId: user.value.trim(),
          pageSize: PAGE_SIZE,
          pageToken: tokens[tokens.length - 1],
        },
        authed(),
      ).response;
      const rows = reply.sessions.map((s) => [
        h("a", { href: `#/sessions/${s.sessionId}` }, s.sessionId),
        s.name,
        stateName(s.state),
        s.userId,
        s.nodeId || "–",
        when(s.startTime),
        s.state === AdminSessionState.TERMINATED
          ? ""
          : h(
              "button",
              {
                type: "button",
                class: "danger",
                "aria-label": `Terminate session ${s.sessionId}`,
                onclick: async () => {
                  if (await terminate(s, status)) await load();
                },
              },
              "Terminate",
            ),
      ]);
      holder.replaceChildren(
        table("Sessions", ["Session", "Name", "State", "User", "Node", "Started", "Actions"], rows),
      );
      pageInfo.textContent = `Page ${tokens.length} · ${reply.totalSize} sessions`;
      previous.disabled = tokens.length === 1;
      next.disabled = !reply.nextPageToken;
      next.dataset.token = reply.nextPageToken;
    } catch (error) {
      status.say(`Listing failed: ${describe(error)}`, true);
    }
  }

  previous.addEventListener("click", () => {
    tokens.pop();
    void load();
  });
  next.addEventListener("click", () => {
    tokens.push(next.dataset.token ?? "");
    void load();
  });
  const filters = h(
    "form",
    {
      class: "filters",
      "aria-label": "Session filters",
      onsubmit: (event: Event) => {
        event.preventDefault();
        tokens.splice(1);
        void load();
      },
    },
    field("State", state),
    field("User id", user),
    h("button", { type: "submit" }, "Apply filters"),
  );
  main.replaceChildren(
    h("h1", {}, "Sessions"),
    filters,
    holder,
    h("div", { class: "pager" }, previous, pageInfo, next),
    status,
  );
  void load();
}

/** One chunk's proof, checked here: whether it leads to ``root``, and its anchor. */
async function checkChunk(sessionId: string, chunk: Chunk, root: string): Promise<[[boolean, string], string]> {
  if (!root) return [[false, "no root yet"], "–"];
  try {
    const asked = { sessionId, chunkId: chunk.chunkId };
    const { proof } = await clients.chunks.getChunkProof(asked, authed()).response;
    let verdict = await checkInclusion(proof?.chunkProof, chunk.merkleHash, root);
    if (verdict[0] && proof?.merkleRoot !== root) verdict = [false, "the proof is for another root"];
    const a = proof?.anchor;
    if (!a?.txHash) return [verdict, "not anchored yet"];
    const block = a.blockHeader?.height ? `block ${a.blockHeader.height}` : "no block yet";
    return [verdict, `${block}, tx ${a.txHash}${a.final ? " (final)" : ""}`];
  } catch (error) {
    return [[false, describe(error)], "–"];
  }
}

const PROOFS_AT_ONCE = 8;

/** The chunks of a session, each with its Merkle proof checked in the browser: the
 * chunk's leaf and audit path must lead to the session's root; the anchoring
 * transaction and block come with the proof once the root is anchored. */
async function chunkTable(sessionId: string, root: string): Promise<[HTMLElement, Map<string, boolean>]> {
  const chunks: Chunk[] = [];
  let pageToken = "";
  do {
    const reply = await clients.chunks.listChunks(
      { sessionId, state: 0, sequenceFrom: 0, pageSize: 1000, pageToken },
      authed(),
    ).response;
    chunks.push(...reply.chunks);
    pageToken = reply.nextPageToken;
  } while (pageToken);
  const checks: [[boolean, string], string][] = [];
  for (let at = 0; at < chunks.length; at += PROOFS_AT_ONCE) {
    const batch = chunks.slice(at, at + PROOFS_AT_ONCE);
    checks.push(...(await Promise.all(batch.map((c) => checkChunk(sessionId, c, root)))));
  }
  const verified = checks.filter(([[ok]]) => ok).length;
  const proven = new Map(chunks.map((c, i) => [c.merkleHash, checks[i][0][0]]));
  const rows = chunks.map((chunk, i) => {
    const [[ok, why], anchor] = checks[i];
    return [
      chunk.sequenceNumber,
      (ChunkState[chunk.state] ?? "unknown").toLowerCase(),
      chunk.sizeBytes,
      h("code", {}, chunk.merkleHash || "–"),
      h(
        "span",
        { class: ok ? "verified" : "unverified", "data-testid": `proof-${chunk.sequenceNumber}` },
        ok ? "verified" : `not verified: ${why}`,
      ),
      anchor,
    ];
  });
  const section = h(
    "section",
    { "aria-labelledby": "chunks-title" },
    h("h2", { id: "chunks-title" }, "Chunks"),
    h(
      "p",
      { "data-testid": "chunks-verdict" },
      root
        ? `${verified} of ${rows.length} chunks verified against the root ${root}.`
        : `${rows.length} chunks; no Merkle root yet, nothing to verify.`,
    ),
    h(
      "div",
      { class: "table-holder" },
      table(
        "Chunks and their Merkle proofs",
        ["Sequence", "State", "Size (bytes)", "Merkle entry", "Proof", "Anchor"],
        rows,
      ),
    ),
  );
  return [section, proven];
}

export function sessionPage(main: HTMLElement, sessionId: string): void {
  const status = statusLine();
  const body = h("div", {});
  const chunks = h("div", {});
  main.replaceChildren(
    h("p", {}, h("a", { href: "#/sessions" }, "← All sessions")),
    h("h1", {}, `Session ${sessionId}`),
    body,
    chunks,
    status,
  );
  async function load(): Promise<void> {
    let root = "";
    try {
      const reply = await clients.sessions.getSessionDetails({ sessionId }, authed()).response;
      root = reply.merkleRoot;
      const s = reply.session;
      const rows: [string, string][] = [
        ["Name", s?.name || "–"],
        ["State", s ? stateName(s.state) : "–"],
        ["User", s?.userId || "–"],
        ["Node", s?.nodeId || "–"],
        ["Started", when(s?.startTime)],
        ["Ended", when(reply.endTime)],
        ["Recording", reply.recordingState || "–"],
        ["Remote desktop", reply.rdpState || "–"],
        ["Chunks", String(reply.chunkCount)],
        ["Size (bytes)", String(reply.sizeBytes)],
        ["Merkle root", reply.merkleRoot || "not yet"],
        ["Anchoring transaction", reply.anchorTxHash || "not anchored yet"],
        ["Anchored in block", reply.anchorBlockHeight ? String(reply.anchorBlockHeight) : "–"],
      ];
      body.replaceChildren(h("dl", { class: "details" }, ...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])));
      append(
        body,
        s && s.state !== AdminSessionState.TERMINATED
          ? h(
              "button",
              {
                type: "button",
                class: "danger",
                onclick: async () => {
                  if (await terminate(s, status)) await load();
                },
              },
              "Terminate this session",
            )
          : null,
      );
    } catch (error) {
      status.say(`Details failed: ${describe(error)}`, true);
      return;
    }
    try {
      const [section, proven] = await chunkTable(sessionId, root);
      chunks.replaceChildren(section, recordingPlayer(sessionId, root, proven));
    } catch (error) {
      status.say(`Chunks failed: ${describe(error)}`, true);
    }
  }
  void load();
}
