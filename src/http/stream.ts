import { Readable } from "node:stream";
import type { FastifyReply } from "fastify";

/**
 * Sends `lines` as a streamed download (`type`, `filename`) once its first chunk has been read.
 * Until then nothing is written, so a failure of the first read (the database down, a window
 * that cannot be read) is answered like any other error — its status and the JSON error body —
 * rather than as a 200 with the download's content type and a cut-off body. A failure after the
 * first chunk can only end the connection: the status line has gone.
 *
 * Generators passed here should do their first read before their first `yield`.
 */
export async function sendDownload(
  reply: FastifyReply,
  type: string,
  filename: string,
  lines: AsyncGenerator<string>,
): Promise<FastifyReply> {
  const first = await lines.next();
  async function* rest(): AsyncGenerator<string> {
    if (first.done) return;
    yield first.value;
    yield* lines;
  }
  reply.type(type).header("content-disposition", `attachment; filename="${filename}"`);
  return reply.send(Readable.from(rest()));
}
