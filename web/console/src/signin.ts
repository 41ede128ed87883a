// Sign-in the way TRON users sign in: auth's challenge signed with TIP-191 by the browser
// wallet (TronLink: window.tronWeb.trx.signMessageV2), or by `lucid sign` and pasted.
import { h, field, statusLine } from "./dom";
import { clients, describe, setToken } from "./rpc";

interface TronWeb {
  defaultAddress?: { base58?: string | false };
  trx: { signMessageV2(message: string): Promise<string> };
}

declare global {
  interface Window {
    tronWeb?: TronWeb;
  }
}

async function login(address: string, message: string, signature: string): Promise<void> {
  const reply = await clients.auth.login({ tronAddress: address, message, signature }).response;
  setToken(reply.tokens?.accessToken ?? "");
}

export function signInPage(main: HTMLElement, done: () => void): void {
  const status = statusLine();
  const wallet = window.tronWeb;
  const walletAddress = wallet?.defaultAddress?.base58 || "";

  const withWallet = h(
    "button",
    {
      type: "button",
      disabled: !walletAddress,
      onclick: async () => {
        if (!wallet || !walletAddress) return;
        status.say("Asking the wallet to sign the challenge…");
        try {
          const issued = await clients.auth.issueChallenge({ tronAddress: walletAddress }).response;
          const signature = await wallet.trx.signMessageV2(issued.message);
          await login(walletAddress, issued.message, signature);
          done();
        } catch (error) {
          status.say(`Sign-in failed: ${describe(error)}`, true);
        }
      },
    },
    "Sign in with TronLink",
  );

  const address = h("input", {
    name: "address",
    autocomplete: "username",
    pattern: "T[1-9A-HJ-NP-Za-km-z]{33}",
    required: true,
    spellcheck: "false",
  });
  const challenge = h("textarea", { name: "challenge", readonly: true, rows: 6 });
  const signature = h("input", { name: "signature", required: true, spellcheck: "false", autocomplete: "off" });
  const command = h("code", {}, "");
  const manual = h(
    "form",
    {
      onsubmit: async (event: Event) => {
        event.preventDefault();
        try {
          await login(address.value.trim(), challenge.value, signature.value.trim());
          done();
        } catch (error) {
          // a challenge is good for one attempt: the next needs a new one
          challenge.value = "";
          signature.value = "";
          status.say(`Sign-in failed: ${describe(error)}. Get a new challenge to try again.`, true);
        }
      },
    },
    field("TRON address", address),
    h(
      "button",
      {
        type: "button",
        onclick: async () => {
          try {
            const issued = await clients.auth.issueChallenge({ tronAddress: address.value.trim() }).response;
            challenge.value = issued.message;
            command.textContent = "lucid sign --key-file YOUR_KEY_FILE --message-file challenge.txt";
            status.say("Challenge issued: save it as challenge.txt, sign it and paste the signature.");
            signature.focus();
          } catch (error) {
            status.say(`No challenge: ${describe(error)}`, true);
          }
        },
      },
      "Get a challenge",
    ),
    field("Challenge to sign", challenge),
    h("p", {}, "Sign it with: ", command),
    field("Signature (hex)", signature),
    h("button", { type: "submit" }, "Sign in with the signature"),
  );

  main.replaceChildren(
    h("h1", {}, "Sign in"),
    h(
      "section",
      { "aria-labelledby": "wallet-heading" },
      h("h2", { id: "wallet-heading" }, "With a TRON wallet"),
      h(
        "p",
        {},
        walletAddress
          ? `Wallet found: ${walletAddress}. It will ask you to sign a one-time challenge.`
          : "No wallet extension found (TronLink). Use a signature from `lucid sign` below.",
      ),
      withWallet,
    ),
    h(
      "section",
      { "aria-labelledby": "manual-heading" },
      h("h2", { id: "manual-heading" }, "Without a wallet extension"),
      manual,
    ),
    status,
  );
}
