// A throwaway certificate authority for tests, made with the openssl CLI in a temp directory: workload
// certificates with SPIFFE URI SANs, and the bad ones mTLS must refuse (another CA, expired, not yet valid).
// Nothing is written to the repository.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface IssuedCert {
  readonly certPem: string;
  readonly keyPem: string;
  readonly certFile: string;
  readonly keyFile: string;
}

export interface IssueOptions {
  /** URI SAN; omitted = a certificate without a SPIFFE ID. */
  readonly spiffeId?: string;
  readonly cn?: string;
  /** openssl ca dates (YYYYMMDDHHMMSSZ); default: valid from an hour ago for a day. */
  readonly startDate?: string;
  readonly endDate?: string;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

function stamp(d: Date): string {
  return d.toISOString().replace(/[-:T]/g, '').slice(0, 14) + 'Z';
}

let serial = 1;

export class TestCa {
  readonly dir: string;
  readonly caPem: string;
  readonly caFile: string;

  constructor(name = 'pillion-test-ca') {
    this.dir = mkdtempSync(join(tmpdir(), 'pillion-ca-'));
    openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', `/O=pillion-test/CN=${name}`], this.dir);
    writeFileSync(join(this.dir, 'index.txt'), '');
    writeFileSync(
      join(this.dir, 'ca.cnf'),
      `[ca]
default_ca = test
[test]
dir = ${this.dir}
database = $dir/index.txt
new_certs_dir = $dir
certificate = $dir/ca.pem
private_key = $dir/ca.key
default_md = sha256
policy = any
unique_subject = no
rand_serial = yes
copy_extensions = none
[any]
commonName = supplied
`,
    );
    this.caFile = join(this.dir, 'ca.pem');
    this.caPem = readFileSync(this.caFile, 'utf8');
  }

  issue(opts: IssueOptions): IssuedCert {
    const n = serial++;
    const base = `w${n}`;
    const ext = [
      'basicConstraints=CA:FALSE',
      'keyUsage=digitalSignature,keyEncipherment',
      'extendedKeyUsage=serverAuth,clientAuth',
      ...(opts.spiffeId !== undefined ? [`subjectAltName=URI:${opts.spiffeId}`] : []),
    ].join('\n');
    writeFileSync(join(this.dir, `${base}.ext`), `${ext}\n`);
    openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${base}.key`, '-out', `${base}.csr`, '-subj', `/CN=${opts.cn ?? 'workload'}`], this.dir);
    const now = Date.now();
    openssl(
      [
        'ca', '-batch', '-config', 'ca.cnf', '-notext', '-in', `${base}.csr`, '-out', `${base}.pem`, '-extfile', `${base}.ext`,
        '-startdate', opts.startDate ?? stamp(new Date(now - 3_600_000)),
        '-enddate', opts.endDate ?? stamp(new Date(now + 86_400_000)),
      ],
      this.dir,
    );
    const certFile = join(this.dir, `${base}.pem`);
    const keyFile = join(this.dir, `${base}.key`);
    return { certPem: readFileSync(certFile, 'utf8'), keyPem: readFileSync(keyFile, 'utf8'), certFile, keyFile };
  }

  /** An expired certificate (valid for a day, two days ago). */
  issueExpired(spiffeId: string): IssuedCert {
    const now = Date.now();
    return this.issue({ spiffeId, startDate: stamp(new Date(now - 2 * 86_400_000)), endDate: stamp(new Date(now - 86_400_000)) });
  }

  /** A certificate valid only from tomorrow. */
  issueNotYetValid(spiffeId: string): IssuedCert {
    const now = Date.now();
    return this.issue({ spiffeId, startDate: stamp(new Date(now + 86_400_000)), endDate: stamp(new Date(now + 2 * 86_400_000)) });
  }

  close(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}
