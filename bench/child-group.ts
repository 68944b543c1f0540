// The child group of a benchmark entry point: Ctrl-C, SIGTERM or an uncaught error stops every child first.
import { ChildGroup } from '../src/cli/children.js';

export function benchChildGroup(name: string): ChildGroup {
  const group = new ChildGroup();
  const closeAndExit = (code: number): void => {
    group.close().then(
      () => process.exit(code),
      (err: unknown) => {
        process.stderr.write(`${name}: stopping the children failed: ${err instanceof Error ? err.message : String(err)}\n`);
        process.exit(code);
      },
    );
  };
  group.installExitHandlers((sig) => {
    process.stderr.write(`\n${sig}: stopping every child\n`);
    closeAndExit(130);
  });
  process.on('uncaughtException', (err) => {
    process.stderr.write(`${name}: uncaught ${err.stack ?? err.message}\n`);
    closeAndExit(1);
  });
  return group;
}
