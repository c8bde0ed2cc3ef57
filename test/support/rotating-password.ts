/**
 * A password getter such as an IAM token or a Vault lease provider gives:
 * the `password` option, which node-postgres calls for each new connection
 * when the server asks for the password. A test sets what it returns.
 */
export class RotatingPassword {
  /** Times node-postgres asked: once per connection attempt. */
  calls = 0;

  constructor(private current: string) {}

  /** The getter, for the `password` option. */
  readonly get = async (): Promise<string> => {
    this.calls++;
    return this.current;
  };

  /** What the getter returns from now on. */
  set(password: string): void {
    this.current = password;
  }
}
