// Recording playback: the rdp cluster's verified replay stream (RdpSessionService
// StreamRecording, over grpc-web) fed into a <video> through Media Source Extensions.
// Each segment is an MPEG-TS file (H.264) that the rdp cluster checked against the
// session's anchored Merkle root before sending it; the page marks it verified when its
// Merkle entry is one whose inclusion proof the page itself checked (the chunk table)
// and the root it was checked against is the session's.
import { h } from "./dom";
import { authed, clients, describe } from "./rpc";

const TYPE = 'video/mp2t; codecs="avc1.42E01E"';

function appended(buffer: SourceBuffer, data: Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => {
    buffer.addEventListener("updateend", () => resolve(), { once: true });
    buffer.addEventListener("error", () => reject(new Error("the browser could not decode the segment")), {
      once: true,
    });
    buffer.appendBuffer(new Uint8Array(data)); // a copy the buffer owns
  });
}

/** The player of a session's recording; ``proven`` maps a Merkle entry to whether
 * its proof checked out against ``root`` in this page. */
export function recordingPlayer(sessionId: string, root: string, proven: Map<string, boolean>): HTMLElement {
  const video = h("video", { controls: true, muted: true, "aria-label": `Recording of session ${sessionId}` });
  const segments = h("ol", { "aria-label": "Recording segments" });
  const state = h("p", { "data-testid": "playback-state", "aria-live": "polite" }, "Not started.");
  const play = h("button", { type: "button" }, "Play the recording");
  let abort: AbortController | undefined;

  async function start(): Promise<void> {
    abort?.abort();
    abort = new AbortController();
    const signal = abort.signal;
    segments.replaceChildren();
    play.disabled = true;
    if (!("MediaSource" in window) || !MediaSource.isTypeSupported(TYPE)) {
      state.textContent = "This browser cannot play MPEG-TS H.264 through Media Source Extensions.";
      play.disabled = false;
      return;
    }
    const source = new MediaSource();
    video.src = URL.createObjectURL(source);
    await new Promise((resolve) => source.addEventListener("sourceopen", resolve, { once: true }));
    const buffer = source.addSourceBuffer(TYPE);
    buffer.mode = "sequence"; // each segment restarts its clock: play them one after another
    state.textContent = "Streaming…";
    let count = 0;
    let marked = 0;
    try {
      const call = clients.recordings.streamRecording({ sessionId }, authed(signal));
      for await (const segment of call.responses) {
        count += 1;
        const ok = segment.merkleRoot === root && proven.get(segment.merkleHash) === true;
        if (ok) marked += 1;
        segments.appendChild(
          h(
            "li",
            { class: ok ? "verified" : "unverified", "data-testid": `segment-${segment.sequenceNumber}` },
            `Segment ${segment.sequenceNumber} of ${segment.segmentCount}: ${segment.data.length} bytes, ` +
              (ok ? "verified against the anchored root" : "not matched to a verified chunk"),
          ),
        );
        await appended(buffer, segment.data);
        if (count === 1) void video.play().catch(() => undefined);
      }
      if (source.readyState === "open") source.endOfStream();
      state.textContent = `Played ${count} segments, ${marked} verified against the anchored root.`;
    } catch (error) {
      if (!signal.aborted) state.textContent = `Playback stopped after ${count} segments: ${describe(error)}`;
    } finally {
      play.disabled = false;
    }
  }

  play.addEventListener("click", () => void start());
  return h(
    "section",
    { "aria-labelledby": "recording-title" },
    h("h2", { id: "recording-title" }, "Recording"),
    play,
    state,
    video,
    segments,
  );
}
