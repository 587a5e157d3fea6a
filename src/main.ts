#!/usr/bin/env node
import { Command, Option } from "commander";
import { ConfigError, loadConfig } from "./config.js";
import { createContext, StartupError } from "./context.js";
import { buildApp } from "./http/app.js";
import { migrate, openDb } from "./platform/db/index.js";

/** Runs `fn`, printing expected start-up failures as one clear line instead of a stack. */
async function run(fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    if (err instanceof ConfigError || err instanceof StartupError) {
      process.stderr.write(`tenantrag: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
}

/** Resolves on the first SIGTERM or SIGINT; a second one exits at once. */
function shutdownSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    let received = false;
    const onSignal = (sig: NodeJS.Signals) => {
      if (received) process.exit(130);
      received = true;
      resolve(sig);
    };
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
  });
}

const program = new Command()
  .name("tenantrag")
  .description("Multi-tenant RAG chatbot backend with usage metering");

program
  .command("serve")
  .description("Start the HTTP API (and, unless --no-worker, the background workers)")
  .addOption(
    new Option("--no-worker", "run the API only; background jobs run in 'tenantrag worker'"),
  )
  .action((opts: { worker: boolean }) =>
    run(async () => {
      const config = loadConfig();
      const ctx = await createContext(config, { defaultMetrics: true });
      const app = await buildApp(ctx);
      if (opts.worker) ctx.startWorkers();
      const address = await app.listen({ port: config.port, host: config.host });
      ctx.logger.info(
        { mode: config.mode, dataDir: config.mode === "embedded" ? config.dataDir : undefined },
        "tenantrag started",
      );
      process.stdout.write(
        `tenantrag (${config.mode} mode) listening on ${address}  —  API docs at ${address}/docs\n`,
      );
      const sig = await shutdownSignal();
      ctx.logger.info({ signal: sig }, "shutting down: no new requests, finishing in-flight ones");
      await app.close();
      await ctx.close();
      ctx.logger.info("stopped");
    }),
  );

program
  .command("worker")
  .description("Run background job workers only (server mode)")
  .action(() =>
    run(async () => {
      const config = loadConfig();
      const ctx = await createContext(config, { defaultMetrics: true });
      ctx.startWorkers();
      ctx.logger.info(
        { mode: config.mode, concurrency: config.workerConcurrency },
        "worker started",
      );
      await shutdownSignal();
      await ctx.close();
    }),
  );

program
  .command("migrate")
  .description("Apply pending database migrations")
  .action(() =>
    run(async () => {
      const config = loadConfig();
      const db = await openDb(config);
      try {
        const applied = await migrate(db);
        process.stdout.write(
          applied.length
            ? `applied migrations: ${applied.join(", ")}\n`
            : "database is up to date\n",
        );
      } finally {
        await db.close();
      }
    }),
  );

const admin = program.command("admin").description("Operator tasks");

admin
  .command("create-platform-admin")
  .description("Create a platform administrator account")
  .requiredOption("--email <email>")
  .requiredOption("--password <password>", "at least 10 characters")
  .action((opts: { email: string; password: string }) =>
    run(async () => {
      const { email, newPassword } = (await import("./modules/auth/index.js")).authSchemas;
      const e = email.safeParse(opts.email);
      const p = newPassword.safeParse(opts.password);
      if (!e.success || !p.success) {
        throw new StartupError(
          !e.success
            ? `--email ${e.error.issues[0]?.message}`
            : `--password ${p.error?.issues[0]?.message}`,
        );
      }
      // Embedded mode migrates on the spot; server mode wants an explicit `tenantrag migrate`.
      const ctx = await createContext(loadConfig());
      try {
        const user = await ctx.auth.createPlatformAdmin({ email: e.data, password: p.data });
        process.stdout.write(`platform admin ${user.email} created (id ${user.id})\n`);
      } catch (err) {
        if ((err as { code?: string }).code === "auth.email_taken")
          throw new StartupError("that email is already taken");
        throw err;
      } finally {
        await ctx.close();
      }
    }),
  );

const audit = program.command("audit").description("The tamper-evident audit log");

audit
  .command("keygen")
  .description(
    "Print a new Ed25519 signing key (PKCS#8 PEM) for AUDIT_SIGNING_KEY, and its public key",
  )
  .action(() =>
    run(async () => {
      const { generateSigningKeyPem, loadSigningKey } = await import(
        "./platform/crypto/signing.js"
      );
      const pem = generateSigningKeyPem();
      const key = loadSigningKey(pem);
      process.stdout.write(pem);
      process.stderr.write(
        `key id ${key.keyId}\npublic key (for 'tenantrag audit verify --public-key'):\n${key.publicKeyPem}`,
      );
    }),
  );

audit
  .command("verify")
  .description(
    "Verify an audit export (GET /api/audit/export) offline: exit 0 when the chain holds, 1 when not, 2 when unreadable",
  )
  .argument("<file>", "the JSON Lines export")
  .requiredOption(
    "--public-key <key>",
    "the deployment's public key: a PEM file, or the PEM or base64 DER itself",
  )
  .action((file: string, opts: { publicKey: string }) =>
    run(async () => {
      const { describeResult, OfflineVerifyError, verifyExportFile } = await import(
        "./modules/audit/index.js"
      );
      try {
        const result = await verifyExportFile(file, opts.publicKey);
        process.stdout.write(`${describeResult(file, result)}\n`);
        process.exitCode = result.ok ? 0 : 1;
      } catch (err) {
        if (err instanceof OfflineVerifyError) {
          process.stderr.write(`tenantrag: ${err.message}\n`);
          process.exit(2);
        }
        throw err;
      }
    }),
  );

await program.parseAsync(process.argv);
