// The child group of a benchmark entry point: Ctrl-C, SIGTERM or an uncaught error stops every child first.
import { ChildGroup } from '../src/cli/children.js';

export function benchChildGroup(name: string): ChildGroup {
  const group = new ChildGroup();
  group.installExitHandlers((sig) => {
    process.stderr.write(`\n${sig}: stopping every child\n`);
    void group.close().then(() => process.exit(130));
  });
  process.on('uncaughtException', (err) => {
    process.stderr.write(`${name}: uncaught ${err.stack ?? err.message}\n`);
    void group.close().then(() => process.exit(1));
  });
  return group;
}
