import { TLSSocket } from 'node:tls';
import type { AuthenticateError, AedesOptions, Client } from 'aedes';
import { connectRefusal, type ConnectFailure, type ConnectLimits } from './connect';
import type { Registry, Role } from './registry';
import { verifySecret } from './secrets';

/** Why a CONNECT was refused, as logged and counted, with its CONNACK return code: one MQTT 3.1.1 defines (1-5). */
export const AUTH_FAILURES = {
  empty_client_id: 2,
  client_id_too_long: 2,
  keepalive_too_long: 2,
  missing_credentials: 5,
  unknown_identity: 4,
  bad_password: 4,
  untrusted_certificate: 5,
  unknown_certificate: 5,
  client_id_not_owned: 5,
  too_many_connections: 3,
} as const satisfies Record<ConnectFailure, 2> & Record<string, 2 | 3 | 4 | 5>;
export type AuthFailure = keyof typeof AUTH_FAILURES;

/** A refused CONNECT; Aedes answers it with CONNACK `returnCode` and closes the connection. */
export class Refusal extends Error {
  readonly returnCode: AuthenticateError['returnCode'];

  constructor(readonly reason: AuthFailure) {
    super(`connection refused: ${reason}`);
    this.returnCode = AUTH_FAILURES[reason];
  }
}

export interface Authenticated {
  id: string;
  role: Role;
  /** How it proved it: a password or a client certificate. */
  by: 'password' | 'certificate';
}

export interface AuthLimits extends ConnectLimits {
  maxConnectionsPerIdentity: number;
}

export type RefusalListener = (client: Client, reason: AuthFailure, claimed: string | undefined, detail?: string) => void;

/**
 * The identity a client id belongs to: the longest registered id that equals it or that,
 * followed by a dash, begins it. Ids may hold dashes themselves, so `gw-017-1` is
 * `gw-017`'s even when `gw` is registered too, and `gw` cannot take over `gw-017`'s ids.
 */
export function ownerOf(registry: Registry, clientId: string): string | undefined {
  if (registry.has(clientId)) return clientId;
  for (let dash = clientId.lastIndexOf('-'); dash > 0; dash = clientId.lastIndexOf('-', dash - 1)) {
    const id = clientId.slice(0, dash);
    if (registry.has(id)) return id;
  }
  return undefined;
}

/** The client certificate's CN and whether --tls-ca vouches for it; undefined when none was presented. */
function peerCertificate(client: Client): { cn: string | undefined; trusted: boolean; error: string | undefined } | undefined {
  if (!(client.conn instanceof TLSSocket)) return undefined;
  const cert = client.conn.getPeerCertificate();
  if (!cert || Object.keys(cert).length === 0) return undefined;
  const cn: unknown = cert.subject?.CN;
  return { cn: typeof cn === 'string' ? cn : undefined, trusted: client.conn.authorized, error: client.conn.authorizationError?.message };
}

/**
 * Aedes's `authenticate` hook. Without a registry every client is anonymous and only the
 * limits apply. With one, a client proves an identity by a trusted client certificate
 * (its CN is the id; username and password are then ignored) or by username (the id) and
 * password (the secret), and its client id must belong to that identity.
 */
export class Authenticator {
  private readonly identities = new WeakMap<Client, Authenticated>();
  /** Clients whose CONNECT broke a rule of connect.ts, until `authenticate` refuses them. */
  private readonly broken = new WeakMap<Client, { reason: ConnectFailure; detail: string }>();
  /** Connections authenticated and not yet closed, per identity: their client ids. */
  private readonly held = new Map<string, Map<Client, string>>();

  constructor(
    private registry: Registry | null,
    private readonly limits: AuthLimits,
    private readonly onRefusal: RefusalListener,
  ) {}

  get anonymous(): boolean {
    return this.registry === null;
  }

  identityOf(client: Client): Authenticated | undefined {
    return this.identities.get(client);
  }

  /** Takes a new registry; returns the connected clients whose identity it removed or whose role it changed. */
  replaceRegistry(registry: Registry): Client[] {
    this.registry = registry;
    const revoked: Client[] = [];
    for (const [id, clients] of this.held) {
      for (const client of clients.keys()) if (registry.get(id)?.role !== this.identities.get(client)?.role) revoked.push(client);
    }
    return revoked;
  }

  /**
   * Aedes's `preConnect` hook: it sees the CONNECT packet, which `authenticate` does not (by
   * then Aedes has replaced an empty client id with a generated one). A refusal here would
   * close the connection without a CONNACK, so the rule broken is noted, and `authenticate`,
   * the first step after Aedes's own checks, answers it with its return code.
   */
  readonly preConnect: NonNullable<AedesOptions['preConnect']> = (client, packet, done) => {
    const broken = connectRefusal(packet, this.limits);
    if (broken) this.broken.set(client, broken);
    done(null, true);
  };

  readonly authenticate: NonNullable<AedesOptions['authenticate']> = (client, username, password, done) => {
    this.check(client, username, password).then(
      (refusal) => {
        if (refusal === null) return done(null, true);
        this.onRefusal(client, refusal.reason, refusal.claimed, refusal.detail);
        done(new Refusal(refusal.reason), null);
      },
      (err: Error) => done(Object.assign(err, { returnCode: 3 }) as AuthenticateError, null),
    );
  };

  private async check(client: Client, username: string | undefined, password: Buffer | undefined): Promise<{ reason: AuthFailure; claimed?: string; detail?: string } | null> {
    const broken = this.broken.get(client);
    if (broken) return broken;
    if (this.registry === null) return null;
    const cert = peerCertificate(client);
    if (cert && !cert.trusted) return { reason: 'untrusted_certificate', claimed: cert.cn, detail: cert.error };
    const by = cert ? 'certificate' : 'password';
    const claimed = cert ? cert.cn : username;
    if (claimed === undefined) return { reason: cert ? 'unknown_certificate' : 'missing_credentials' };
    const identity = this.registry.get(claimed);
    if (!identity) return { reason: cert ? 'unknown_certificate' : 'unknown_identity', claimed };
    // Before the slow hash, so that a client id that cannot be right costs nothing.
    if (ownerOf(this.registry, client.id) !== claimed) return { reason: 'client_id_not_owned', claimed };
    if (by === 'password' && !(password && (await verifySecret(password, identity.secret)))) return { reason: 'bad_password', claimed };
    return this.admit(client, { id: claimed, role: identity.role, by });
  }

  /** Counts the connection against its identity's limit, synchronously after any await, so concurrent CONNECTs cannot all slip under it. */
  private admit(client: Client, identity: Authenticated): { reason: AuthFailure; claimed: string; detail?: string } | null {
    // The registry may have been reloaded while the secret was checked.
    if (this.registry?.get(identity.id)?.role !== identity.role) return { reason: 'unknown_identity', claimed: identity.id };
    // Gone already: Aedes drops it, and a closed socket would never release its place.
    if (client.conn.destroyed) return null;
    const clients = this.held.get(identity.id) ?? new Map<Client, string>();
    // A connection under the same client id is about to be taken over (MQTT-3.1.4-2), so it does not count.
    let others = 0;
    for (const clientId of clients.values()) if (clientId !== client.id) others++;
    if (others >= this.limits.maxConnectionsPerIdentity) return { reason: 'too_many_connections', claimed: identity.id, detail: `${others} held` };
    clients.set(client, client.id);
    this.held.set(identity.id, clients);
    this.identities.set(client, identity);
    client.conn.once('close', () => {
      clients.delete(client);
      if (clients.size === 0 && this.held.get(identity.id) === clients) this.held.delete(identity.id);
    });
    return null;
  }
}
