import { ProtocolError } from '../../lib/errors.js'

/**
 * Wraps a port so that any rejection of its methods becomes the protocol's
 * `unavailable` error (the original is kept as `cause` and handed to
 * `onError`): a failing store is a dependency failure, not a bug of the
 * server. `close` is passed through unchanged. Wrapped methods are made once.
 */
export function guardPort<T extends object> (port: T, name: string, onError?: (err: unknown) => void): T {
  const wrapped = new Map<PropertyKey, unknown>()
  return new Proxy(port, {
    get (target, property) {
      const value: unknown = Reflect.get(target, property, target)
      if (typeof value !== 'function' || property === 'close') return value
      let fn = wrapped.get(property)
      if (fn === undefined) {
        fn = async (...args: unknown[]): Promise<unknown> => {
          try {
            return await (Reflect.apply(value, target, args) as Promise<unknown>)
          } catch (err) {
            if (err instanceof ProtocolError) throw err
            onError?.(err)
            throw new ProtocolError('unavailable', `${name} is unavailable; try again`, { cause: err })
          }
        }
        wrapped.set(property, fn)
      }
      return fn
    }
  })
}
