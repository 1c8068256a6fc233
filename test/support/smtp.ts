/**
 * A real SMTP server on loopback (the `smtp-server` package) that keeps every message it accepts,
 * parsed with `mailparser`, so email notifications are tested through nodemailer end to end.
 */
import { simpleParser } from 'mailparser';
import { SMTPServer } from 'smtp-server';

/** One accepted message. */
export interface ReceivedMail {
  from: string;
  to: string[];
  subject: string;
  text: string;
  messageId: string;
  headers: Map<string, unknown>;
}

/** A running SMTP sink. */
export interface SmtpSink {
  port: number;
  mails: ReceivedMail[];
  /** Logins seen (user names). */
  logins: string[];
  close(): Promise<void>;
}

/** Starts an SMTP server on a free loopback port; with `auth`, it requires that login. */
export async function startSmtpSink(auth?: { username: string; password: string }): Promise<SmtpSink> {
  const mails: ReceivedMail[] = [];
  const logins: string[] = [];
  const server = new SMTPServer({
    secure: false,
    disabledCommands: auth ? ['STARTTLS'] : ['STARTTLS', 'AUTH'],
    authOptional: !auth,
    allowInsecureAuth: true,
    logger: false,
    onAuth(a, _session, cb) {
      if (auth && a.username === auth.username && a.password === auth.password) {
        logins.push(a.username ?? '');
        cb(null, { user: a.username });
      } else cb(new Error('invalid login'));
    },
    onData(stream, session, cb) {
      simpleParser(stream)
        .then((m) => {
          mails.push({
            from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
            to: session.envelope.rcptTo.map((r) => r.address),
            subject: m.subject ?? '',
            text: m.text ?? '',
            messageId: m.messageId ?? '',
            headers: m.headers,
          });
          cb();
        })
        .catch((e: Error) => cb(e));
    },
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const a = server.server.address();
  const port = typeof a === 'object' && a ? a.port : 0;
  server.server.unref();
  return { port, mails, logins, close: () => new Promise((r) => server.close(() => r())) };
}
